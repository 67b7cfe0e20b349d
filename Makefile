# ditflow: install, demo, test, and the stage chain as a user's own pipeline would run it.
PY      ?= .venv/bin/python
DITFLOW ?= .venv/bin/ditflow
TOY_VIDEO  ?= assets/toy-reference.gif
TOY_PROMPT ?= a blue bar on a white background
TOY_PROMPT2 ?= a green triangle on a grey background
# the demo's image-to-video row: the toy I2V model animates TOY_IMAGE (TOY_PROMPT's object where the reference's starts)
TOY_I2V   ?= assets/toy-cogvideox-i2v
TOY_IMAGE ?= assets/toy-image.png
# `make transfer`: out of the box, the trained toy model at its own sizes and settings (its ditflow.json) on
# the demo's reference; MODEL=5b VIDEO=... PROMPT=... GUIDE= for the paper's
VIDEO   ?= $(TOY_VIDEO)
PROMPT  ?= $(TOY_PROMPT)
MODEL   ?= toy
SIZE    ?=
GUIDE   ?= --opt-mode emb
# `make demo-tiny`: a tiny random model, built on the fly
TINY_VIDEO ?= assets/moving-square.gif
TINY_PROMPT ?= a red circle on a grey background
TINY_MODEL ?= out/tiny-model
TINY_SIZE  ?= --frames 9 --height 32 --width 48 --blocks 1
TINY_GUIDE ?= --opt-mode emb --steps 10 --guidance-range 10,5 --lr 0.05,0.05 --cfg 6
OUT     ?= out

.PHONY: install test test-shipped docs ui demo demo-tiny transfer tiny-model toy-model clean-demo bench-quality bench-scale bench-davis probe-amf probe-extract-timestep probe-text probe-sampler probe-renoise toy-reference toy-i2v toy-image
.DEFAULT_GOAL := help
.PHONY: help

help:
	@echo "make install   create .venv and install ditflow (CPU/GPU torch from this machine's pip)"
	@echo "make demo      extract -> guide -> inject -> eval -> viz on a bundled clip with the toy model (CPU, minutes)"
	@echo "make demo-tiny the same plumbing on a tiny random model (no weights; its videos are noise)"
	@echo "make test      lint, then the test suite (CPU; the browser tests need Debian's chromium); make test-shipped: the probes of the shipped toy model"
	@echo "make ui        the web page on the toy model: http://127.0.0.1:7860 (ditflow ui --model toy)"
	@echo "make docs      docs/cli.md from the commands' help"
	@echo "make transfer VIDEO=... PROMPT=... [MODEL=5b]   the chained stages on your own video (default: the toy model) -> out/transfer.mp4"
	@echo "make bench-amf AMF memory/speed benchmark (BENCH_AMF_ARGS=--quick for a 3-minute subset)"
	@echo "make bench-quality  motion-transfer quality table on the toy model (held-out references)"
	@echo "make bench-scale    memory/time of guided runs at the real models' sizes, random weights (a GPU; ARGS=--quick: CPU, < 12 min; ARGS=--simulate: no GPU, no weights)"
	@echo "make bench-davis DAVIS=path/to/DAVIS [MODEL=5b] [OUT=dir] [ARGS=...]  the paper's DAVIS benchmark (benchmarks/davis/README.md)"
	@echo "make probe-amf / probe-text / probe-sampler / probe-renoise  what the toy model's AMF sees per block and noise level / which prompt words it reads / whether the sampler sets its shapes / from which noise level it loses them"
	@echo "make probe-extract-timestep  the stored AMF against the true motion per extraction timestep (extract --timestep)"

# The environment is a prerequisite of everything that runs ditflow: on a fresh clone `make demo` or
# `make test` builds it first. The stamp is rebuilt when pyproject.toml changes.
VENV_STAMP := .venv/.installed
$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	.venv/bin/pip install -q -e ".[test,ui]"
	touch $@

install: $(VENV_STAMP)

test: $(VENV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The page (ditflow ui) on the trained toy model; Ctrl-C stops it and removes its temporary folder
ui: $(VENV_STAMP)
	$(DITFLOW) ui --model toy

# docs/cli.md from the commands' own help (a test fails when it is stale)
docs: $(VENV_STAMP)
	$(PY) -m ditflow.cli.docs > docs/cli.md

test-shipped: $(VENV_STAMP)
	$(PY) -m pytest -q -m shipped

$(TINY_MODEL)/model_index.json:
	$(PY) -m ditflow.tiny $(TINY_MODEL)

tiny-model: $(TINY_MODEL)/model_index.json

# The toy model's recipe (issue: trained on the synthetic world). Resumable: rerun after an interruption.
# RECIPE=v9 (the shipped weights) trains v8 into out/toy-v8 first (unless it is there), then v9 from it: a GPU
# recipe, minutes there (v8 alone would take about 20 hours on 2 CPU cores); RECIPE=v4 is the CPU recipe (about
# 70 min on 2 cores). WORKERS processes render the training clips.
RECIPE  ?= v9
WORKERS ?= 0
# v8 takes v4's VAE from out/toy-v4-vae (never from assets/toy-cogvideox, which this target overwrites): copied
# here from the shipped model, whose VAE has been v4's since v4, before anything is trained.
toy-model:
	@if [ ! -d out/toy-v4-vae/vae ]; then mkdir -p out/toy-v4-vae && cp -r assets/toy-cogvideox/vae out/toy-v4-vae/; fi
	@if [ "$(RECIPE)" = v9 ] && [ ! -f out/toy-v8/model_index.json ]; then \
	  $(PY) -m ditflow.toyworld.train --recipe v8 --workers $(WORKERS) --work out/toy-train-v8 --out out/toy-v8; fi
	$(PY) -m ditflow.toyworld.train --recipe $(RECIPE) --workers $(WORKERS) --work out/toy-train-$(RECIPE) --out assets/toy-cogvideox

# The toy model as an image-to-video one (docs/toy-model.md): convert, fine-tune MINUTES, judge frame 0 (a
# folder that exists is only judged again: TOY_I2V=out/another to train a new one)
toy-i2v: $(VENV_STAMP)
	$(PY) -m ditflow.toyworld.i2v --base assets/toy-cogvideox --out $(TOY_I2V) --minutes $(or $(MINUTES),45)

# The chain: each stage prints one hash on stdout, the next stage takes it.
transfer: $(VENV_STAMP)
	@mkdir -p $(OUT)
	AMF=$$($(DITFLOW) extract $(VIDEO) --model $(MODEL) $(SIZE)) && \
	GEN=$$($(DITFLOW) guide --amf $$AMF --prompt "$(PROMPT)" $(GUIDE) --out $(OUT)/transfer.mp4 --overwrite) && \
	$(DITFLOW) cache path $$GEN && echo "amf $$AMF" && echo "gen $$GEN -> $(OUT)/transfer.mp4" && \
	echo $$GEN > $(OUT)/last-gen

# The README's first command: the chain on the trained toy model (assets/toy-cogvideox) and a bundled
# reference (an orange circle on an arc, a held-out world seed). Settings come from the model's ditflow.json.
demo: $(VENV_STAMP)
	@mkdir -p $(OUT)
	@START=$$(date +%s) && \
	AMF=$$($(DITFLOW) extract $(TOY_VIDEO) --model toy) && \
	BASE=$$($(DITFLOW) guide --amf $$AMF --prompt "$(TOY_PROMPT)" --no-guidance --no-injection --out $(OUT)/demo-backbone.mp4 --overwrite) && \
	GEN=$$($(DITFLOW) guide --amf $$AMF --prompt "$(TOY_PROMPT)" --opt-mode emb --out $(OUT)/demo-guided.mp4 --overwrite) && \
	INJ=$$($(DITFLOW) inject --emb $$GEN --prompt "$(TOY_PROMPT2)" --out $(OUT)/demo-injected.mp4 --overwrite) && \
	$(DITFLOW) eval $$GEN --tracker lk --metrics mf --json-out $(OUT)/demo-eval.json --overwrite > /dev/null && \
	$(DITFLOW) eval $$BASE --reference $$AMF --tracker lk --metrics mf --json-out $(OUT)/demo-eval-backbone.json --overwrite > /dev/null && \
	CMP=$$($(DITFLOW) viz compare $$AMF $$BASE $$GEN $$INJ --labels reference,backbone,ditflow,injected --out $(OUT)/demo-compare.mp4 --overwrite) && \
	STRIP=$$($(DITFLOW) viz compare $$AMF $$BASE $$GEN $$INJ --labels reference,backbone,ditflow,injected --out $(OUT)/demo-compare.png --overwrite) && \
	AMF2=$$($(DITFLOW) extract $(TOY_VIDEO) --model toy-i2v) && \
	BASE2=$$($(DITFLOW) guide --amf $$AMF2 --image $(TOY_IMAGE) --prompt "$(TOY_PROMPT)" --no-guidance --no-injection --out $(OUT)/demo-i2v-backbone.mp4 --overwrite) && \
	I2V=$$($(DITFLOW) guide --amf $$AMF2 --image $(TOY_IMAGE) --prompt "$(TOY_PROMPT)" --opt-mode emb --out $(OUT)/demo-i2v.mp4 --overwrite) && \
	$(DITFLOW) eval $$I2V --tracker lk --metrics mf --json-out $(OUT)/demo-i2v-eval.json --overwrite > /dev/null && \
	$(DITFLOW) eval $$BASE2 --reference $$AMF2 --tracker lk --metrics mf --json-out $(OUT)/demo-i2v-eval-backbone.json --overwrite > /dev/null && \
	STRIP2=$$($(DITFLOW) viz compare $$AMF2 $(TOY_IMAGE) $$BASE2 $$I2V --labels reference,image,backbone,ditflow --out $(OUT)/demo-i2v-compare.png --overwrite) && \
	echo "reference AMF   $$AMF ($(TOY_VIDEO))" && echo "backbone video  $$BASE -> $(OUT)/demo-backbone.mp4" && \
	echo "guided video    $$GEN -> $(OUT)/demo-guided.mp4" && \
	echo "zero-shot reuse $$INJ -> $(OUT)/demo-injected.mp4 ($(TOY_PROMPT2))" && \
	echo "motion fidelity $$(python3 -c "import json;print(round(json.load(open('$(OUT)/demo-eval.json'))['motion_fidelity'],3))") guided, $$(python3 -c "import json;print(round(json.load(open('$(OUT)/demo-eval-backbone.json'))['motion_fidelity'],3))") backbone" && \
	echo "side by side    $$CMP (still: $$STRIP)" && \
	echo "image-to-video  $$I2V -> $(OUT)/demo-i2v.mp4 ($(TOY_IMAGE) moved as the reference; AMF $$AMF2, backbone $$BASE2)" && \
	echo "motion fidelity $$(python3 -c "import json;print(round(json.load(open('$(OUT)/demo-i2v-eval.json'))['motion_fidelity'],3))") guided, $$(python3 -c "import json;print(round(json.load(open('$(OUT)/demo-i2v-eval-backbone.json'))['motion_fidelity'],3))") backbone (image-to-video; still: $$STRIP2)" && \
	echo "took            $$(( $$(date +%s) - START )) s"

# The same chain on a tiny *random* model (no weights at all): proves the plumbing, its videos are noise.
demo-tiny: tiny-model
	@mkdir -p $(OUT)
	@AMF=$$($(DITFLOW) extract $(TINY_VIDEO) --model $(TINY_MODEL) $(TINY_SIZE)) && \
	GEN=$$($(DITFLOW) guide --amf $$AMF --prompt "$(TINY_PROMPT)" $(TINY_GUIDE) --out $(OUT)/demo-tiny-guided.mp4 --overwrite) && \
	INJ=$$($(DITFLOW) inject --emb $$GEN --prompt "a blue square on a white background" --out $(OUT)/demo-tiny-injected.mp4 --overwrite) && \
	$(DITFLOW) eval $$GEN --tracker lk --json-out $(OUT)/demo-tiny-eval.json --overwrite > /dev/null && \
	CMP=$$($(DITFLOW) viz compare $$AMF $$GEN $$INJ --labels reference,guided,injected --out $(OUT)/demo-tiny-compare.mp4 --overwrite) && \
	LOSS=$$($(DITFLOW) viz loss $$GEN --out $(OUT)/demo-tiny-loss.png --overwrite) && \
	echo "reference AMF   $$AMF" && echo "guided video    $$GEN -> $(OUT)/demo-tiny-guided.mp4" && \
	echo "zero-shot reuse $$INJ -> $(OUT)/demo-tiny-injected.mp4" && echo "scores          $(OUT)/demo-tiny-eval.json" && \
	echo "loss curves     $$LOSS" && echo "side by side    $$CMP"

clean-demo:
	rm -rf $(OUT)

-include benchmarks/amf.mk

# Motion-transfer quality on the toy model: 20 held-out references, every setup of the paper's table.
# Then the toy I2V model: each reference's motion on a picture of the new prompt's object where the reference's starts.
I2V_SETUPS ?= backbone,injection only,DiTFlow latent,DiTFlow emb,zero-shot inject,FlowMotion,RoPECraft,FastVMT
bench-quality:
	$(PY) benchmarks/bench_quality.py --out bench-results/quality.json $(BENCH_QUALITY_ARGS)
	$(PY) benchmarks/bench_quality.py --model toy-i2v --setups "$(I2V_SETUPS)" --out bench-results/quality-i2v.json $(BENCH_QUALITY_ARGS)

# CogVideoX-2B/5B and Wan 2.1-1.3B/14B built from their configs with random weights (nothing is downloaded):
# ditflow's default, --fast, --cpu-offload and the paper-style baseline, each in its own process
bench-scale: $(VENV_STAMP)
	$(PY) benchmarks/bench_scale.py $(ARGS)

# The demo's reference: held-out world seed 39 (an orange circle on an arc), drawn in the shipped model's world.
toy-reference:
	$(PY) -c "from ditflow.toyworld.references import model_world_clip; from ditflow.video import write_video; write_video(model_world_clip(39, 'assets/toy-cogvideox').frames, 'assets/toy-reference.gif', overwrite=True)"

# The demo's image: a blue bar on white drawn where the reference's orange circle starts, at its size.
toy-image:
	$(PY) -c "from PIL import Image; from ditflow.toyworld.references import model_world_clip; from ditflow.toyworld.world import draw_still; c = model_world_clip(39, 'assets/toy-cogvideox'); Image.fromarray(draw_still('blue', 'bar', c.trajectories[0][0], c.radii[0], 'plain', 'white', *c.frames.shape[1:3])).save('$(TOY_IMAGE)')"

# Which block's AMF sees the true motion at which noise level (picks the toy model's guidance block/range).
probe-amf:
	$(PY) benchmarks/probe_amf.py --out bench-results/probe_amf.json

# How the stored AMF's agreement with the true motion changes with `extract --timestep` (A14B's default comes from it).
probe-extract-timestep: $(VENV_STAMP)
	$(PY) benchmarks/probe_extract_timestep.py --out bench-results/probe_extract_timestep.json

# Which prompt words the toy model reads: its denoising error on objects with the shape or colour word swapped.
probe-text:
	$(PY) benchmarks/probe_text.py --out bench-results/probe_text.json

# Whether the sampler (DDIM/DPM, CFG, steps) decides the toy backbone's shapes: prompt match per variant.
probe-sampler:
	$(PY) benchmarks/probe_sampler.py --out bench-results/probe_sampler.json

# From which noise level the toy model loses each shape: held-out clips re-noised to t0, sampled down, judged.
probe-renoise:
	$(PY) benchmarks/probe_renoise.py --out bench-results/probe_renoise.json

# The DiTFlow paper's benchmark (50 DAVIS 2017 clips x 3 prompts) on your DAVIS frames: clips missing from
# DAVIS are listed and skipped; the batch resumes from the cache ($(CACHE), else $$DITFLOW_CACHE) when rerun.
# Writes $(OUT)/davis-manifest.jsonl, davis-results.json, davis-report.md and davis-report.html.
DAVIS ?=
# SETUPS=... (or DAVIS_SETUPS=...) picks the setups: the paper's by default; flowmotion,ropecraft,fastvmt add the peers
SETUPS ?= backbone,injection,smm,moft,ditflow-latent,ditflow-emb,inject
DAVIS_SETUPS ?= $(SETUPS)
# the report's columns: CLIP score, MF, temporal consistency, FTD (seconds and peak memory come with every run);
# a --metrics in ARGS, given after this, wins
DAVIS_METRICS ?= clip,mf,tc,ftd
ARGS ?=
CACHE ?=
bench-davis:
	@test -n "$(DAVIS)" || { echo "error: give DAVIS=path/to/DAVIS (the DAVIS 2017 root: benchmarks/davis/README.md)" >&2; exit 2; }
	@mkdir -p $(OUT)
	$(PY) -m ditflow.batch.davis "$(DAVIS)" --prompts benchmarks/davis/prompts.json --out $(OUT)/davis-manifest.jsonl --overwrite
	@$(PY) -m ditflow.cli.app batch $(OUT)/davis-manifest.jsonl --model $(MODEL) --setups $(DAVIS_SETUPS) --metrics $(DAVIS_METRICS) \
	  --json-out $(OUT)/davis-results.json --overwrite $(if $(CACHE),--cache $(CACHE)) $(ARGS); rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	$(PY) -m ditflow.cli.app report $(OUT)/davis-results.json --md $(OUT)/davis-report.md \
	  --html $(OUT)/davis-report.html --overwrite $(if $(CACHE),--cache $(CACHE)) && \
	cat $(OUT)/davis-report.md && exit $$rc
