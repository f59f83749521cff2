# The two set-up commands of the README. Both install what they need.
.PHONY: up test

# Runs the whole platform in one process (gps up), with the pinned nats-server.
up:
	scripts/install-tools.sh
	cargo run --release -- up

# Runs every test (unit, integration against real NATS), failing on "no tests ran".
test:
	scripts/test.sh
