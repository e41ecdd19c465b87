"""``scaling serve``: a web page and a JSON API that caption or answer questions about uploaded media with a
trained adapter (Starlette + uvicorn, the ``[serve]`` extra). :mod:`.app` builds the ASGI app, :mod:`.batcher`
groups concurrent requests into one ``generate`` call, :mod:`.inputs` reads and checks uploads, :mod:`.page`
is the HTML page."""
