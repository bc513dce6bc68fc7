"""``densematch ui``: a local web page to try and compare matchers on your own images.

:mod:`.library` (models and example pairs) and :mod:`.session` (one run: match, fit, draw, write) need
no Gradio; :mod:`.app` builds the Gradio page (optional extra ``ui``).
"""
