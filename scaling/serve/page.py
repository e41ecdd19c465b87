"""The one HTML page of ``scaling serve``: upload a file of the adapter's modality, optionally ask a question,
set beams and new tokens, and read the answer (it posts the form to ``/v1/generate``). No external assets."""

from __future__ import annotations

import html

from scaling.evaluation.predict import KEY_MODALITY

#: the file picker's filter per modality: its MIME family and every extension the decoder reads
ACCEPT = {m: ",".join([f"{m}/*"] + [f".{k}" for k, km in KEY_MODALITY.items() if km == m])
          for m in ("image", "audio", "video")}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scaling serve: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.3rem; }} .meta {{ color: #666; font-size: .9rem; }}
form {{ display: grid; grid-template-columns: 10rem 1fr; gap: .6rem 1rem; align-items: center; margin: 1.2rem 0; }}
input[type=text] {{ width: 100%; }} input[type=number] {{ width: 5rem; }}
button {{ grid-column: 2; justify-self: start; padding: .4rem 1.2rem; }}
#preview img, #preview video {{ max-width: 16rem; max-height: 16rem; border: 1px solid #ccc; }}
#answer {{ font-size: 1.2rem; background: #f3f6fa; padding: .8rem; min-height: 1.5rem; white-space: pre-wrap; }}
#error {{ color: #b00020; white-space: pre-wrap; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="meta">adapter <code>{checkpoint}</code> · {modality} · trained for <b>{task}</b> ·
API: <code>POST /v1/generate</code> (multipart field <code>file</code>, or JSON with base64 <code>media</code>)</p>
<form id="form">
  <label for="file">{modality} file</label><input id="file" name="file" type="file" accept="{accept}" required>
  <label for="question">question {question_note}</label><input id="question" name="question" type="text"
    placeholder="{placeholder}">
  <label for="num_beams">beams</label><input id="num_beams" name="num_beams" type="number" min="1" max="{max_beams}" value="{beams}">
  <label for="max_new_tokens">max new tokens</label><input id="max_new_tokens" name="max_new_tokens" type="number" min="1"
    max="{max_tokens}" value="{new_tokens}">
  <button id="submit" type="submit">Generate</button>
</form>
<div id="preview"></div>
<h2 style="font-size:1rem">Answer</h2>
<div id="answer" data-state="empty"></div>
<p class="meta" id="info"></p>
<div id="error"></div>
<script>
const form = document.getElementById('form'), answer = document.getElementById('answer');
const error = document.getElementById('error'), info = document.getElementById('info');
document.getElementById('file').addEventListener('change', (ev) => {{
  const f = ev.target.files[0], box = document.getElementById('preview');
  box.innerHTML = '';
  if (!f) return;
  const url = URL.createObjectURL(f), kind = '{modality}';
  const el = document.createElement(kind === 'image' ? 'img' : kind);
  el.src = url; if (kind !== 'image') el.controls = true;
  box.appendChild(el);
}});
form.addEventListener('submit', async (ev) => {{
  ev.preventDefault();
  error.textContent = ''; info.textContent = ''; answer.textContent = '…'; answer.dataset.state = 'pending';
  const data = new FormData(form);
  for (const k of ['question', 'num_beams', 'max_new_tokens']) if (!data.get(k)) data.delete(k);
  try {{
    const res = await fetch('/v1/generate', {{ method: 'POST', body: data }});
    const body = await res.json();
    if (!res.ok) {{ answer.textContent = ''; answer.dataset.state = 'error'; error.textContent = res.status + ': ' + body.error; return; }}
    answer.textContent = body.prediction; answer.dataset.state = 'done';
    info.textContent = 'task ' + body.task + ' · ' + body.num_beams + ' beam(s) · max ' + body.max_new_tokens +
      ' new tokens · answered in a batch of ' + body.batch_size;
  }} catch (e) {{ answer.textContent = ''; answer.dataset.state = 'error'; error.textContent = String(e); }}
}});
</script>
</body></html>
"""


def render_page(checkpoint: str, modality: str, task: str, beams: int, new_tokens: int, max_beams: int,
                max_tokens: int) -> str:
    qa = task != "caption"
    return PAGE.format(
        title=html.escape(f"{'Answer questions about' if qa else 'Caption'} {modality}"),
        checkpoint=html.escape(checkpoint), modality=html.escape(modality), task=html.escape(task),
        accept=ACCEPT.get(modality, ""), beams=beams, new_tokens=new_tokens, max_beams=max_beams, max_tokens=max_tokens,
        question_note="(required)" if qa else "(optional: empty = caption)",
        placeholder="what colour is the shape?" if qa else "leave empty for a caption",
    )
