##@ Fault tests

.PHONY: test-faults
test-faults: install ## End-to-end fault and invalidation tests: real serve + invalidate against throwaway MariaDB/Redis.
	$(BIN)/pytest tests/faults -rA -p no:cacheprovider
