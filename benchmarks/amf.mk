# Attention Motion Flow benchmark: the paper-style reference vs ditflow.amf, one child process per point.
# Include from the main Makefile (`include benchmarks/amf.mk`), then:
#   make bench-amf                          full run (about 15 min on 2 CPU cores) -> bench-results/amf.json
#   make bench-amf BENCH_AMF_ARGS=--quick   a few points only (about 3 min)
BENCH_AMF_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
BENCH_AMF_PYTHON ?= $(BENCH_AMF_ROOT)/.venv/bin/python
BENCH_AMF_OUT ?= $(BENCH_AMF_ROOT)/bench-results/amf.json
BENCH_AMF_ARGS ?=

.PHONY: bench-amf
bench-amf:
	$(BENCH_AMF_PYTHON) $(BENCH_AMF_ROOT)/benchmarks/bench_amf.py --out $(BENCH_AMF_OUT) $(BENCH_AMF_ARGS)
