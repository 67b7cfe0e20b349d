"""The page: the paper's flow in five tabs (reference, generate, reuse, cache, batch) over one `Runner`.

Each form is drawn from `forms` (settings, help and ranges from the config rules); each button calls one
`Runner` method; a failure is the CLI's one-line message, shown under the field it names (else under the
button), never a traceback. Model runs share one queue slot, so two tabs asking for the same run get one
artifact: the second finds it in the cache."""
from __future__ import annotations

import html
import re
from typing import Any

import gradio as gr

from . import forms, media, store_tabs
from .actions import Runner

CSS = """.dtf-error{color:#b00020;font-weight:600;margin:-6px 0 6px}.dtf-error p{margin:0}
.dtf-hash code{font-size:85%}#dtf-title h1{margin-bottom:0}.dtf-cache table{border-collapse:collapse;width:100%}
.dtf-cache td,.dtf-cache th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;font-size:90%}
.dtf-cache img{height:48px;image-rendering:pixelated}
.dtf-pic img,.dtf-pic video{width:100%!important;height:auto!important;max-height:440px;object-fit:contain;
image-rendering:pixelated}"""
SETUP_HELP = {"ditflow-latent": "DiTFlow, optimising the latent", "ditflow-emb": "DiTFlow, optimising the positional "
              "embeddings (reusable: see Reuse)", "smm": "SMM's loss", "moft": "MOFT's loss",
              "injection": "KV injection only", "backbone": "the model alone",
              "flowmotion": "FlowMotion (no backpropagation through the model)",
              "ropecraft": "RoPECraft (RoPE warped by optical flow; reusable)", "fastvmt": "FastVMT (tiled local AMF)"}
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=1)


class Form:
    """A form's fields and, under each, the slot its error shows in."""

    def __init__(self, fields: list[forms.Field], columns: int = 3):
        self.fields, self.inputs, self.errors = fields, [], []
        for i in range(0, len(fields), columns):
            with gr.Row():
                for f in fields[i:i + columns]:
                    with gr.Column(min_width=160):
                        self.inputs.append(_input(f))
                        self.errors.append(gr.Markdown(visible=False, elem_classes="dtf-error"))

    def args(self, values: list[Any]) -> list[str]:
        return forms.to_args(self.fields, values)


def _input(f: forms.Field):
    if f.kind == "flag":
        return gr.Checkbox(label=f.label, info=f.help, value=False)
    if f.kind == "choice":
        return gr.Dropdown([("model default" + (f" ({f.default})" if f.default else ""), "")] + list(f.choices),
                           value="", label=f.label, info=f.help)
    if f.kind == "switch":
        return gr.Dropdown([("model default" + (f" ({f.default})" if f.default else ""), ""), "on", "off"], value="",
                           label=f.label, info=f.help)
    return gr.Textbox(label=f.label, info=f.help, placeholder=f"default: {f.default}" if f.default else "default")


def error_updates(text: str | None, slots: list[tuple[str, Any]], general) -> list:
    """Visibility and text of every error slot: the message under the first field whose flag it names
    (`--steps`, `'--steps'`), else under the button."""
    named = None
    if text:
        for flag, slot in slots:
            if re.search(re.escape(flag) + r"(?![\w-])", text):
                named = slot
                break
    out = [gr.update(value=text, visible=True) if slot is named else gr.update(visible=False) for _, slot in slots]
    out.append(gr.update(value=text, visible=bool(text) and named is None))
    return out


def _reporter(progress: gr.Progress):
    return lambda fraction, text: progress(fraction, desc=text)


def build(runner: Runner, title: str = "ditflow") -> gr.Blocks:
    from ..backbones import resolve_model

    preset = resolve_model(runner.model).preset
    with gr.Blocks(title=title) as page:
        gr.Markdown(f"# ditflow: motion transfer\nmodel **{html.escape(runner.model)}** · cache "
                    f"`{html.escape(str(runner.store.root))}` · every run here is a cache hit for the CLI and back",
                    elem_id="dtf-title")
        with gr.Tabs():
            with gr.Tab("1 · Reference", id="reference"):
                ref = _reference_tab(runner, preset)
            with gr.Tab("2 · Generate", id="generate"):
                gen = _generate_tab(runner, preset)
            with gr.Tab("3 · Reuse", id="reuse"):
                reuse = _reuse_tab(runner)
            with gr.Tab("4 · Cache", id="cache"):
                cache = store_tabs.cache_tab(runner)
            with gr.Tab("5 · Batch report", id="batch"):
                store_tabs.batch_tab(runner)
        # a new artifact shows up in every picker
        ref["done"].then(lambda h: gr.update(choices=runner.amf_choices(), value=h), ref["hash_state"], gen["amf"])
        gen["done"].then(lambda: gr.update(choices=runner.emb_choices()), None, reuse["emb"])
        for event in (ref["done"], gen["done"], reuse["done"]):
            event.then(cache["refresh_fn"], None, cache["refresh_outputs"])
        page.load(lambda: (gr.update(choices=runner.amf_choices()), gr.update(choices=runner.emb_choices())),
                  None, [gen["amf"], reuse["emb"]]).then(cache["refresh_fn"], None, cache["refresh_outputs"])
    return page




def _run_controls(label: str, run_id: str, hash_id: str) -> tuple:
    """A stage's run and cancel buttons, its message slot for errors no field owns, and where its hash shows:
    (run, cancel, general, hash_md)."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=run_id)
        cancel = gr.Button("Cancel", variant="stop", scale=0, min_width=100)
    general = gr.Markdown(visible=False, elem_classes="dtf-error")
    return run, cancel, general, gr.Markdown(elem_classes="dtf-hash", elem_id=hash_id)


def _wire_cancel(button, runner: Runner) -> None:
    def cancel(request: gr.Request) -> None:
        runner.cancel(request.session_hash)

    button.click(cancel, None, None, queue=False)


# -- 1 reference ---------------------------------------------------------------------------------------------
def _reference_tab(runner: Runner, preset) -> dict:
    gr.Markdown("Upload a reference video, or pick one already extracted. Extraction records the "
                "Attention Motion Flow (AMF) the guidance will follow.")
    with gr.Row():
        upload = gr.File(label="reference video", file_types=list(media_types()), type="filepath", height=120)
        with gr.Column():
            pick = gr.Dropdown([], label="or an AMF in the cache", value=None, allow_custom_value=False)
    video_error = gr.Markdown(visible=False, elem_classes="dtf-error")
    with gr.Accordion("extraction settings (blank: the model's default)", open=False):
        form = Form(forms.extract_fields(preset), columns=4)
    run, cancel, general, hash_md = _run_controls("Extract", "dtf-extract", "dtf-amf-hash")
    with gr.Row():
        ref_video = gr.Video(label="reference (as the model sees it)", interactive=False, loop=True, autoplay=True,
                             elem_id="dtf-ref-video", elem_classes="dtf-pic")
        anim = gr.Image(label="AMF animation (viz amf)", type="filepath", interactive=False, elem_id="dtf-amf-anim",
                        elem_classes="dtf-pic")
    still = gr.Image(label="AMF, every frame pair (viz amf --out x.png)", type="filepath", interactive=False,
                     elem_id="dtf-amf-still", elem_classes="dtf-pic")
    hash_state = gr.State(None)
    slots = [("VIDEO", video_error), *zip([f.flag for f in form.fields], form.errors)]

    def extract(data: dict, request: gr.Request, progress=gr.Progress()):
        video, picked, values = data[upload], data[pick], [data[c] for c in form.inputs]
        try:
            if video:
                art = runner.run(request.session_hash, lambda: runner.extract(video, form.args(values)),
                                 _reporter(progress))
            elif picked:
                from ..artifacts import load

                art = load(runner.store, picked, "amf")
            else:
                from ..errors import InputError

                raise InputError("upload a reference video (VIDEO) or pick an AMF from the cache")
            still_path, anim_path = media.amf_files(art, runner.work)
            shown = (f"AMF **`{art.hash}`** · blocks {', '.join(map(str, art.blocks))} · grid {art.grid} · "
                     f"`ditflow guide --amf {art.hash[:12]} ...`")
            return [art.hash, shown, str(media.video_file(art, runner.work)), str(anim_path), str(still_path),
                    *error_updates(None, slots, general)]
        except Exception as e:  # every failure is one line on the page, never a traceback
            return [None, "", None, None, None, *error_updates(runner.message(e), slots, general)]

    outputs = [hash_state, hash_md, ref_video, anim, still, *[s for _, s in slots], general]
    done = run.click(extract, {upload, pick, *form.inputs}, outputs, **MODEL_QUEUE)
    _wire_cancel(cancel, runner)
    pick.focus(lambda: gr.update(choices=runner.amf_choices()), None, pick)
    return {"done": done, "hash_state": hash_state}


def media_types() -> tuple[str, ...]:
    from .actions import VIDEO_SUFFIXES

    return VIDEO_SUFFIXES


# -- 2 generate ----------------------------------------------------------------------------------------------
def _generate_tab(runner: Runner, preset) -> dict:
    from ..batch.setups import SETUPS

    with gr.Row():
        amf = gr.Dropdown([], label="reference AMF", value=None, scale=2)
        setup = gr.Dropdown([(f"{k}: {SETUP_HELP.get(k, k)}", k) for k in SETUPS], value="ditflow-emb", label="setup",
                            info="The paper's setups (as `ditflow batch --setups`)", scale=2)
    amf_error = gr.Markdown(visible=False, elem_classes="dtf-error")
    picture = Picture(runner, amf)
    prompt = gr.Textbox(label="prompt", lines=1, placeholder="what to generate", elem_id="dtf-prompt")
    prompt_error = gr.Markdown(visible=False, elem_classes="dtf-error")
    with gr.Row():
        backbone = gr.Checkbox(label="also run the backbone alone (same prompt and seed), to compare", value=True)
        scores = gr.Checkbox(label="score: motion fidelity and CLIP score (when their weights are present)", value=True)
    with gr.Accordion("model settings (blank: the model's default, as on the CLI)", open=False):
        form = Form(forms.guide_fields(preset) + _family_fields(runner, preset), columns=3)
    with gr.Accordion("method settings (the peers' setups; blank: the published default)", open=False):
        methods = Form(forms.method_fields(), columns=4)
    run, cancel, general, hash_md = _run_controls("Generate", "dtf-generate", "dtf-gen-hash")
    compare = gr.Video(label="reference | picture | backbone | result (viz compare)" if runner.image_role else
                       "reference | backbone | result (viz compare)", interactive=False, loop=True, autoplay=True,
                       elem_id="dtf-compare", elem_classes="dtf-pic")
    with gr.Row():
        result = gr.Video(label="result", interactive=False, loop=True, autoplay=True, elem_id="dtf-result",
                          elem_classes="dtf-pic")
        loss = gr.Image(label="guidance loss (viz loss)", type="filepath", interactive=False, elem_id="dtf-loss")
    score_md = gr.Markdown()
    slots = [("--amf", amf_error), *picture.slots, ("--prompt", prompt_error),
             *zip([f.flag for f in form.fields + methods.fields], form.errors + methods.errors)]

    def generate(data: dict, request: gr.Request, progress=gr.Progress()):
        from ..artifacts import load

        amf_hash, text, setup_name = data[amf], data[prompt], data[setup]
        with_backbone, with_scores, values = data[backbone], data[scores], [data[c] for c in form.inputs]
        try:
            shared, image = form.args(values) + picture.args(data), picture.file(data)
            args = shared + methods.args([data[c] for c in methods.inputs])  # the backbone run reads no method's
            report = _reporter(progress)
            art = runner.run(request.session_hash, lambda: runner.guide(amf_hash, text, setup_name, args, image), report)
            reference = load(runner.store, art.inputs["amf"], "amf")
            first = [reference, art.image] if art.image is not None else [reference]
            heads = ["reference", "image"][:len(first)]
            shown, labels = [*first, art], [*heads, setup_name]
            if with_backbone and setup_name != "backbone":
                base = runner.run(request.session_hash, lambda: runner.guide(amf_hash, text, "backbone", shared, image),
                                  report)
                shown, labels = [*first, base, art], [*heads, "backbone", setup_name]
            loss_path = media.loss_file(art, runner.work)
            text_scores = runner.scores(art) if with_scores else ""
            hint = " · reusable in **3 · Reuse**" if art.opt_mode == "emb" and art.inputs.get("guidance") else ""
            return [f"gen **`{art.hash}`**{hint}", str(media.compare_file(shown, labels, runner.work)),
                    str(media.video_file(art, runner.work)), str(loss_path) if loss_path else None, text_scores,
                    *error_updates(None, slots, general)]
        except Exception as e:  # one line on the page, never a traceback
            return ["", None, None, None, "", *error_updates(runner.message(e), slots, general)]

    outputs = [hash_md, compare, result, loss, score_md, *[s for _, s in slots], general]
    done = run.click(generate, {amf, prompt, setup, backbone, scores, *picture.inputs, *form.inputs, *methods.inputs}, outputs,
                     **MODEL_QUEUE)
    _wire_cancel(cancel, runner)
    return {"done": done, "amf": amf}


def _family_fields(runner: Runner, preset) -> list[forms.Field]:
    from ..backbones import resolve_model

    return forms.family_fields(resolve_model(runner.model).adapter, preset)


class Picture:
    """An image-to-video model's picture: an upload (read by ditflow, never decoded by gradio), --image-fit, and
    a preview of the picture as the run will animate it. Empty (no inputs, no flags) for a text-to-video model."""

    def __init__(self, runner: Runner, ref=None, required: bool = True, what: str = "picture to animate"):
        """`ref`: the field holding the AMF (or the run) whose size the preview takes."""
        self.inputs, self.slots, self.upload, self.fit = [], [], None, None
        role = runner.image_role
        if role is None:
            return
        from .actions import IMAGE_SUFFIXES

        fit_field = forms.image_fit_field()
        need = " (required: an image-to-video model)" if role == "required" and required else \
            " (optional)" if required else ""
        with gr.Row():
            self.upload = gr.File(label=what + need, file_types=list(IMAGE_SUFFIXES), type="filepath", height=120,
                                  elem_id="dtf-image")
            with gr.Column():
                self.fit = gr.Dropdown(list(fit_field.choices), value=fit_field.default, label=fit_field.label,
                                       info=fit_field.help, elem_id="dtf-image-fit")
                error = gr.Markdown(visible=False, elem_classes="dtf-error")
            preview = gr.Image(label="as the model sees it", type="numpy", interactive=False, height=160,
                               elem_id="dtf-image-preview", elem_classes="dtf-pic")
        preview_error = gr.Markdown(visible=False, elem_classes="dtf-error")
        self.inputs, self.slots = [self.upload, self.fit], [("--image-fit", error), ("--image", preview_error)]

        def show(path, fit, ref=None):
            if not path:
                return None, gr.update(visible=False)
            try:
                return runner.preview(path, fit, ref), gr.update(visible=False)
            except Exception as e:  # one line under the picture
                return None, gr.update(value=runner.message(e), visible=True)

        for event in (self.upload.change, self.fit.change):
            event(show, [c for c in (self.upload, self.fit, ref) if c is not None], [preview, preview_error])

    def file(self, data: dict) -> str | None:
        return data[self.upload] if self.upload is not None else None

    def args(self, data: dict) -> list[str]:
        return ["--image-fit", data[self.fit]] if self.fit is not None and data[self.fit] else []



# -- 3 reuse -------------------------------------------------------------------------------------------------
def _reuse_tab(runner: Runner) -> dict:
    gr.Markdown("Zero-shot transfer: replay the embeddings an emb-mode run optimised on a new prompt; "
                "no optimisation, so it takes one plain generation.")
    emb = gr.Dropdown([], label="emb-mode run", value=None)
    emb_error = gr.Markdown(visible=False, elem_classes="dtf-error")
    picture = Picture(runner, emb, required=False, what="another picture to animate (blank: the source run's)")
    prompt = gr.Textbox(label="new prompt", elem_id="dtf-inject-prompt")
    prompt_error = gr.Markdown(visible=False, elem_classes="dtf-error")
    with gr.Accordion("settings (blank: the source run's)", open=False):
        form = Form(forms.inject_fields(), columns=3)
    run, cancel, general, hash_md = _run_controls("Inject", "dtf-inject", "dtf-inject-hash")
    compare = gr.Video(label="reference | source run | injected", interactive=False, loop=True, autoplay=True,
                       elem_id="dtf-inject-video", elem_classes="dtf-pic")
    slots = [("--emb", emb_error), *picture.slots, ("--prompt", prompt_error),
             *zip([f.flag for f in form.fields], form.errors)]

    def inject(data: dict, request: gr.Request, progress=gr.Progress()):
        from ..artifacts import load

        emb_hash, text, values = data[emb], data[prompt], [data[c] for c in form.inputs]
        try:
            args, image = form.args(values) + picture.args(data), picture.file(data)
            art = runner.run(request.session_hash, lambda: runner.inject(emb_hash, text, args, image),
                             _reporter(progress))
            reference, source = load(runner.store, art.inputs["amf"], "amf"), load(runner.store, art.inputs["emb"], "gen")
            first, heads = ([reference, art.image], ["reference", "image"]) if art.image is not None else \
                ([reference], ["reference"])
            path = media.compare_file([*first, source, art], [*heads, "source run", "injected"], runner.work)
            return [f"gen **`{art.hash}`**", str(path), *error_updates(None, slots, general)]
        except Exception as e:  # one line on the page, never a traceback
            return ["", None, *error_updates(runner.message(e), slots, general)]

    done = run.click(inject, {emb, prompt, *picture.inputs, *form.inputs}, [hash_md, compare, *[s for _, s in slots], general],
                     **MODEL_QUEUE)
    _wire_cancel(cancel, runner)
    emb.focus(lambda: gr.update(choices=runner.emb_choices()), None, emb)
    return {"done": done, "emb": emb}
