# vireo: one image for every instance (PGlite alone, or many instances on one PostgreSQL + Redis).
#   docker build -t vireo .
#   docker run -p 3000:3000 -e CORS_ORIGINS=https://app.example.com -e ADMIN_API_KEY=... -v vireo-data:/app/.data vireo
# Pinned to the Bun that CI tests with (test/ops/dockerfile.test.ts checks they agree). The slim variant (Debian
# slim: no docs, man pages or locales) keeps the image under 300 MB with both inference backends.
FROM oven/bun:1.4.4-slim

WORKDIR /app

# Dependencies first, so editing the source does not invalidate this layer. Pruned in the same step (a later
# step could not shrink this layer): the peers Bun installs by default (typescript, bun-types: types, never run),
# onnxruntime-node's binaries for other platforms, every onnxruntime-web build except the one Bun resolves
# (the package's `node` export, ort.node.min.mjs, and the single WASM binary it loads; Bun has no WebGPU),
# and source maps, type declarations and docs everywhere.
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production --omit=peer \
 && ort_bin=node_modules/onnxruntime-node/bin/napi-v6 arch="$(bun -p process.arch)" \
 && find "$ort_bin" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -r {} + \
 && find "$ort_bin/linux" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -r {} + \
 && test -f "$ort_bin/linux/$arch/onnxruntime_binding.node" \
 && find node_modules/onnxruntime-web/dist -type f ! -name ort.node.min.mjs ! -name 'ort-wasm-simd-threaded.mjs' ! -name 'ort-wasm-simd-threaded.wasm' -delete \
 && rm -r node_modules/onnxruntime-web/lib \
 && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.md' \) -delete \
 && rm -rf /root/.bun/install/cache

COPY src ./src
COPY drizzle ./drizzle
COPY models ./models

# The code stays root-owned and read-only for the service; only the PGlite folder is writable.
RUN mkdir -p /app/.data && chown bun:bun /app/.data

# MIMALLOC_PURGE_DELAY=-1: Bun's allocator keeps the memory it has freed for reuse instead of handing it back to the
# kernel 100 ms later; on a VM every page handed back costs a fault to take again, which added ≈ 80–200 µs to a
# one-frame /infer here (README, "Memory allocator (Bun)"). Read when Bun starts: here, never in a .env file.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    PGLITE_DIR=/app/.data/pglite \
    MIMALLOC_PURGE_DELAY=-1

# The image's own unprivileged user (uid 1000).
USER bun

EXPOSE 3000

# curl is not in the image; Bun's fetch is. Liveness never touches the database, so a slow disk
# or database shows in readiness, not as a restart loop.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/api/v1/health/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Bun runs as PID 1 through the image's entrypoint (exec), so SIGTERM reaches vireo's graceful shutdown.
CMD ["bun", "src/index.ts"]
