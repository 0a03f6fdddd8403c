/** Growable typed-array column: appending millions of rows reallocates only O(log n) times. */
export class Column<T extends Int32Array | Float32Array | Float64Array | Uint8Array> {
  length = 0;
  constructor(
    private data: T,
    private readonly make: (n: number) => T,
  ) {}

  push(v: number): void {
    if (this.length === this.data.length) {
      const next = this.make(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }

  /** A view of the pushed values (no copy; invalidated by the next push that grows the column). */
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }

  /** A compact copy holding exactly the pushed values. */
  finish(): T {
    return this.data.slice(0, this.length) as T;
  }
}
