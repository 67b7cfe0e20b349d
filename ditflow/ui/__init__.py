"""`ditflow ui`: the paper's flow on one local web page (Gradio, the `ui` extra), a thin layer over the library.

forms.py    the page's settings as the CLI's flags (help, ranges, choices from the config rules; parsed by the CLI)
actions.py  what each button does: the stages, store, eval and report calls the CLI makes; progress and cancel
media.py    pictures and videos of artifacts (ditflow.viz, ditflow.video) in the page's work folder
page.py     the gradio layout: reference, generate, reuse, cache, batch report
server.py   host/auth checks, the temporary work folder, launch
"""
