.PHONY: demo test image-test bench lint-docker icon

# The one-command demo (see README).
demo:
	./scripts/demo.sh

# The whole test suite, installing what it needs.
test:
	./scripts/test.sh

# The container image end to end: podman builds the Dockerfile, runs it against the test rig.
image-test:
	./scripts/image-test.sh

# The benchmark harness (bench/, crate r2-sync-bench; settings in BENCH_* variables, see the README).
bench:
	cargo run --locked --release -p r2-sync-bench

lint-docker:
	./scripts/lint-docker.sh

# The Unraid template's icon (docs/icon.png), drawn by a standard-library script.
icon:
	python3 scripts/make-icon.py
