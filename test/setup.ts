import { setDefaultTimeout } from 'bun:test'

// Tests run quietly and deterministically: every test builds its own config from this base.
process.env.NODE_ENV ??= 'test'

// Some tests start servers, load models in worker threads or spawn other processes, which takes longer than the
// runner's 5 s default on a busy 2-core machine. Set here, every way of running them (the README's command, CI's
// partial runs, `bun test <file>` by hand) gets the same bound; a test that truly hangs still fails after it.
setDefaultTimeout(300_000)
