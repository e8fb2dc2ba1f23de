.PHONY: check setup test dev
setup:
	scripts/setup
check:
	scripts/check
test: check
dev:
	scripts/dev
