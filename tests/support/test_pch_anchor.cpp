// Nothing to compile: the target exists to build the test programs' precompiled header (tests/integration).
