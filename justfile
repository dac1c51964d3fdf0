# Keel's everyday commands. `just` is optional: each recipe is one plain command.

# Run the server with the embedded defaults (in-memory stores, development keys).
run:
    cargo run -p server

# Every test of the workspace (the README's test command).
test:
    cargo test --workspace

# Exactly what CI runs.
ci:
    bash .ci/run

# Format the code.
fmt:
    cargo fmt --all

# Lint as CI does.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# The effective configuration, secrets redacted.
config:
    cargo run -q -p server -- --print-config

# Benchmarks (issue #6): release build, Keel against its references, docs/benchmarks.md.
# Arguments pass through, e.g. `just bench --quick` or `just bench --only http`.
bench *args:
    bash bench/run.sh {{args}}
