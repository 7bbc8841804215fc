// Tests run quietly and deterministically: every test builds its own config from this base.
process.env.NODE_ENV ??= 'test'
