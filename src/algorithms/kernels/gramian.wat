;; The Gramian YᵀY of a block of factor rows, the SIMD twin of `gramian` in ../kernels.ts: float32
;; rows are widened to float64 and accumulated in float64 lanes (f64x2), four rows per pass over
;; the output to cut its load/store traffic by four, as the JavaScript kernel does.
;;
;; Every pointer is a byte offset into the imported memory (a WasmArena, arena.ts); k is even
;; (the caller requires a multiple of 4). Built by `npm run build:kernels` into gramian.wasm and
;; gramian.shared.wasm (the memory import declared `shared`); build.test.ts checks both.
(module
  (import "env" "memory" (memory 1))

  ;; tmp[j·k + f] = (f64) Y[(r + j)·k + f] for the $rows rows from row $r: two floats per step.
  (func $widen (param $Y i32) (param $k i32) (param $r i32) (param $rows i32) (param $tmp i32)
    (local $src i32) (local $end i32)
    (local.set $src (i32.add (local.get $Y) (i32.shl (i32.mul (local.get $r) (local.get $k)) (i32.const 2))))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.mul (local.get $rows) (local.get $k)) (i32.const 2))))
    (loop $pair
      (v128.store (local.get $tmp) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $src))))
      (local.set $tmp (i32.add (local.get $tmp) (i32.const 16)))
      (local.set $src (i32.add (local.get $src) (i32.const 8)))
      (br_if $pair (i32.lt_u (local.get $src) (local.get $end)))))

  ;; Folds four widened rows (tmp, 4k doubles) into the upper triangle of out: for every a and
  ;; every even b from the even column at or left of a,
  ;;   out[a,b..b+1] += y0[a]·y0[b..b+1] + y1[a]·y1[b..b+1] + y2[a]·y2[b..b+1] + y3[a]·y3[b..b+1]
  ;; added left to right.
  (func $fold4 (param $k i32) (param $out i32) (param $tmp i32)
    (local $kb i32) (local $a i32) (local $b i32) (local $o i32) (local $t i32)
    (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128)
    (local.set $kb (i32.shl (local.get $k) (i32.const 3)))
    (local.set $a (i32.const 0))
    (loop $rowA
      (local.set $t (i32.add (local.get $tmp) (i32.shl (local.get $a) (i32.const 3))))
      (local.set $y0 (f64x2.splat (f64.load (local.get $t))))
      (local.set $y1 (f64x2.splat (f64.load (i32.add (local.get $t) (local.get $kb)))))
      (local.set $y2 (f64x2.splat (f64.load (i32.add (local.get $t) (i32.shl (local.get $kb) (i32.const 1))))))
      (local.set $y3 (f64x2.splat (f64.load (i32.add (local.get $t) (i32.mul (local.get $kb) (i32.const 3))))))
      (local.set $b (i32.and (local.get $a) (i32.const -2)))
      (loop $colB
        (local.set $o (i32.add (local.get $out)
          (i32.shl (i32.add (i32.mul (local.get $a) (local.get $k)) (local.get $b)) (i32.const 3))))
        (local.set $t (i32.add (local.get $tmp) (i32.shl (local.get $b) (i32.const 3))))
        (v128.store (local.get $o)
          (f64x2.add
            (f64x2.add
              (f64x2.add
                (f64x2.add (v128.load (local.get $o)) (f64x2.mul (local.get $y0) (v128.load (local.get $t))))
                (f64x2.mul (local.get $y1) (v128.load (i32.add (local.get $t) (local.get $kb)))))
              (f64x2.mul (local.get $y2)
                (v128.load (i32.add (local.get $t) (i32.shl (local.get $kb) (i32.const 1))))))
            (f64x2.mul (local.get $y3)
              (v128.load (i32.add (local.get $t) (i32.mul (local.get $kb) (i32.const 3)))))))
        (local.set $b (i32.add (local.get $b) (i32.const 2)))
        (br_if $colB (i32.lt_s (local.get $b) (local.get $k))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (br_if $rowA (i32.lt_s (local.get $a) (local.get $k)))))

  ;; The one-row version of $fold4, for the rows left over: out[a,b..b+1] += y0[a]·y0[b..b+1].
  (func $fold1 (param $k i32) (param $out i32) (param $tmp i32)
    (local $a i32) (local $b i32) (local $o i32) (local $y0 v128)
    (local.set $a (i32.const 0))
    (loop $rowA
      (local.set $y0 (f64x2.splat (f64.load (i32.add (local.get $tmp) (i32.shl (local.get $a) (i32.const 3))))))
      (local.set $b (i32.and (local.get $a) (i32.const -2)))
      (loop $colB
        (local.set $o (i32.add (local.get $out)
          (i32.shl (i32.add (i32.mul (local.get $a) (local.get $k)) (local.get $b)) (i32.const 3))))
        (v128.store (local.get $o)
          (f64x2.add (v128.load (local.get $o))
            (f64x2.mul (local.get $y0)
              (v128.load (i32.add (local.get $tmp) (i32.shl (local.get $b) (i32.const 3)))))))
        (local.set $b (i32.add (local.get $b) (i32.const 2)))
        (br_if $colB (i32.lt_s (local.get $b) (local.get $k))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (br_if $rowA (i32.lt_s (local.get $a) (local.get $k)))))

  ;; gram(Y, k, start, end, out, tmp): accumulates YᵀY of rows [start, end) of Y (rows × k
  ;; float32) into the upper triangle (from the even column at or left of the diagonal) of the k×k
  ;; float64 matrix at out; the caller mirrors the lower triangle. tmp holds 4k doubles of scratch.
  (func $gram (export "gram")
    (param $Y i32) (param $k i32) (param $start i32) (param $end i32) (param $out i32) (param $tmp i32)
    (local $r i32)
    (local.set $r (local.get $start))
    (block $fours
      (loop $four
        (br_if $fours (i32.gt_s (i32.add (local.get $r) (i32.const 4)) (local.get $end)))
        (call $widen (local.get $Y) (local.get $k) (local.get $r) (i32.const 4) (local.get $tmp))
        (call $fold4 (local.get $k) (local.get $out) (local.get $tmp))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $four)))
    (block $ones
      (loop $one
        (br_if $ones (i32.ge_s (local.get $r) (local.get $end)))
        (call $widen (local.get $Y) (local.get $k) (local.get $r) (i32.const 1) (local.get $tmp))
        (call $fold1 (local.get $k) (local.get $out) (local.get $tmp))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $one)))))
