.PHONY: demo test bench lint-docker

# The one-command demo (see README).
demo:
	./scripts/demo.sh

# The whole test suite, installing what it needs.
test:
	./scripts/test.sh

bench:
	./scripts/bench.sh

lint-docker:
	./scripts/lint-docker.sh
