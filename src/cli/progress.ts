/** A progress bar on stderr when it is a terminal, plain periodic lines otherwise (logs, CI). */
import cliProgress from 'cli-progress';

export interface Progress {
  update(fraction: number, label?: string): void;
  stop(): void;
}

export function progressBar(title: string): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${title} [{bar}] {percentage}% {label}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(100, 0, { label: '' });
    return {
      update: (f, label) => bar.update(Math.round(f * 100), { label: label ?? '' }),
      stop: () => bar.stop(),
    };
  }
  let lastPct = -10;
  return {
    update(f, label) {
      const pct = Math.floor(f * 100);
      if (pct >= lastPct + 10) {
        lastPct = pct - (pct % 10);
        process.stderr.write(`${title}: ${pct}%${label ? ` ${label}` : ''}\n`);
      }
    },
    stop() {},
  };
}
