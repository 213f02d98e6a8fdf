"""test_serve.py: `moe serve` driven by the official `openai` Python client
and by raw sockets, as a user (or an attacker) would.

A tiny random model (`moe synth`) is served on a free loopback port; the
server is always killed at the end. Checks: models list; chat and
completion, streamed and not, the stream equal to the whole answer and
ending with `data: [DONE]`; usage counts (prompt tokens as `moe run
--show-prompt` counts them); greedy output equal to `moe run --temp 0`;
stop strings; `seed` repeats; 8 concurrent clients each equal to the same
request alone and to `moe run`; `experts_per_token` changes the output,
equals `moe run --experts-per-token`, and is reported; a malformed-request
corpus and 1,000 random mutations of valid requests (every answer a JSON
error or a valid answer, the server stays up and still answers the same);
a slow-drip client is cut off while others are served; a client that leaves
frees its sequence; a full queue answers 503 with Retry-After; a bounded
load test (64 streaming clients, zero errors, resident memory flat after
warm-up, TTFT and inter-token latency printed, never asserted); SIGTERM
finishes a running stream and exits 0. Under `make sanitize` MOE_BIN is the
ASan+UBSan build and the server's stderr must hold no sanitizer report.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks as ck  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
CI = os.environ.get("CI") == "true"

try:
    import openai
except ImportError:  # pragma: no cover
    openai = None


class Server:
    """moe serve on a free port; stop() (or the atexit in main) kills it."""

    def __init__(self, model, *args):
        env = dict(os.environ)
        # a small ASan quarantine, so that freed memory is re-used and RSS
        # says something under the sanitizer build too
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4:detect_leaks=0"
        env.pop("LD_PRELOAD", None)
        self.err_path = tempfile.mktemp(prefix="moe_serve_err_")
        self.errf = open(self.err_path, "w")
        self.p = subprocess.Popen([MOE, "--threads", "1", "serve", model, "--port", "0"] + list(args),
                                  stdout=subprocess.PIPE, stderr=self.errf, env=env)
        line = b""
        t0 = time.time()
        while time.time() - t0 < 60:
            line = self.p.stdout.readline()
            if line or self.p.poll() is not None:
                break
        m = re.search(rb"on http://([0-9.]+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("the server did not start: %r %s" % (line, self.stderr()))
        self.host = m.group(1).decode()
        self.port = int(m.group(2))
        self.model_id = line.split(b" ")[2].decode()
        self.base = "http://%s:%d" % (self.host, self.port)

    def stderr(self):
        try:
            return open(self.err_path, errors="replace").read()
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def rss_kib(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.errf.close()
        return self.p.returncode


def raw(srv, method, path, body=None, headers=None, timeout=30):
    """One request on its own connection: (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, str):
        body = body.encode()
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hd = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hd, data


def is_error_json(data):
    try:
        e = json.loads(data)["error"]
        return all(k in e for k in ("message", "type", "param", "code")) and isinstance(e["message"], str)
    except Exception:
        return False


def moe_run(model, prompt, n, *extra):
    p = subprocess.run([MOE, "--threads", "1", "run", model, "-p", prompt, "-n", str(n), "--temp", "0"]
                       + list(extra), capture_output=True, timeout=120)
    out = p.stdout
    if out.endswith(b"\n"):
        out = out[:-1]
    return p.returncode, out.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def prompt_tokens(model, prompt):
    p = subprocess.run([MOE, "--threads", "1", "run", model, "-p", prompt, "-n", "1", "--temp", "0",
                        "--show-prompt"], capture_output=True, timeout=120)
    m = re.search(rb"--- (\d+) tokens ---", p.stderr)
    return int(m.group(1)) if m else -1


def complete(client, mid, prompt, n=16, **kw):
    return client.completions.create(model=mid, prompt=prompt, max_tokens=n, temperature=0, **kw)


def test_basic(srv, client, model):
    mid = srv.model_id
    models = client.models.list()
    ck.check("serve_models", [m.id for m in models.data] == [mid], "models %r" % models)
    st, _, body = raw(srv, "GET", "/health")
    ck.check("serve_health", st == 200 and json.loads(body)["status"] == "ok", "%d %r" % (st, body))

    prompt = "The cat sat on"
    r = complete(client, mid, prompt, 16)
    text = r.choices[0].text
    rc, ref, err = moe_run(model, prompt, 16)
    ck.check("serve_completion_equals_moe_run", rc == 0 and text == ref,
             "server %r, moe run %r (rc %d %s)" % (text, ref, rc, err[-200:]))
    npt = prompt_tokens(model, prompt)
    u = r.usage
    ck.check("serve_usage_completion", u.prompt_tokens == npt and
             u.completion_tokens == (16 if r.choices[0].finish_reason == "length" else u.completion_tokens)
             and u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens >= 1,
             "usage %r, moe run counts %d prompt tokens, finish %s" % (u, npt, r.choices[0].finish_reason))
    # streamed: the same text in pieces, usage at the end
    parts, usage, fin = [], None, None
    for ch in client.completions.create(model=mid, prompt=prompt, max_tokens=16, temperature=0,
                                        stream=True, stream_options={"include_usage": True}):
        if ch.choices:
            parts.append(ch.choices[0].text)
            fin = ch.choices[0].finish_reason or fin
        if ch.usage:
            usage = ch.usage
    ck.check("serve_completion_stream", "".join(parts) == text and usage is not None and
             usage.completion_tokens == u.completion_tokens and fin == r.choices[0].finish_reason,
             "stream %r vs %r, usage %r" % ("".join(parts), text, usage))
    st, hd, body = raw(srv, "POST", "/v1/completions",
                       json.dumps({"model": mid, "prompt": prompt, "max_tokens": 4, "stream": True}))
    ck.check("serve_sse_done", st == 200 and hd.get("content-type", "").startswith("text/event-stream")
             and body.rstrip().endswith(b"data: [DONE]") and body.startswith(b"data: "),
             "%d %r ... %r" % (st, body[:80], body[-40:]))

    # chat: streamed == not streamed; the rendered prompt counted
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    c = client.chat.completions.create(model=mid, messages=msgs, max_tokens=12, temperature=0)
    ctext = c.choices[0].message.content
    parts = []
    role = None
    for ch in client.chat.completions.create(model=mid, messages=msgs, max_tokens=12, temperature=0,
                                             stream=True):
        d = ch.choices[0].delta
        role = role or d.role
        if d.content:
            parts.append(d.content)
    ck.check("serve_chat", isinstance(ctext, str) and c.choices[0].message.role == "assistant" and
             c.usage.completion_tokens >= 1 and c.usage.prompt_tokens > 5,
             "chat %r usage %r" % (ctext, c.usage))
    ck.check("serve_chat_stream", "".join(parts) == ctext and role == "assistant",
             "stream %r vs %r (role %r)" % ("".join(parts), ctext, role))
    rc, cref, _ = moe_run(model, "Hello there", 12, "--chat")
    c1 = client.chat.completions.create(model=mid, messages=[{"role": "user", "content": "Hello there"}],
                                        max_tokens=12, temperature=0)
    ck.check("serve_chat_equals_moe_run_chat", rc == 0 and c1.choices[0].message.content == cref,
             "server %r, moe run --chat %r" % (c1.choices[0].message.content, cref))

    # stop strings: cut before the earliest one, finish_reason stop
    long = complete(client, mid, prompt, 40).choices[0].text
    m = re.search(r"[A-Za-z ]{2,}", long[3:])
    if ck.check("serve_stop_candidate", m is not None, "no ASCII run in %r" % long):
        stop = m.group(0)[:2]
        want = long[:long.find(stop)]
        r2 = complete(client, mid, prompt, 40, stop=[stop, "\x01never"])
        ck.check("serve_stop", r2.choices[0].text == want and r2.choices[0].finish_reason == "stop",
                 "stop %r: got %r, want %r (%s)" % (stop, r2.choices[0].text, want, r2.choices[0].finish_reason))
        parts = [ch.choices[0].text for ch in client.completions.create(
            model=mid, prompt=prompt, max_tokens=40, temperature=0, stop=stop, stream=True) if ch.choices]
        ck.check("serve_stop_stream", "".join(parts) == want, "%r vs %r" % ("".join(parts), want))

    # seed: same text twice at temperature 1; two seeds give two texts
    def sampled(seed):
        return client.completions.create(model=mid, prompt=prompt, max_tokens=24, temperature=1.0,
                                         seed=seed).choices[0].text
    a, b, c2 = sampled(123), sampled(123), sampled(124)
    ck.check("serve_seed_repeats", a == b and len(a) > 0, "%r vs %r" % (a, b))
    ck.check("serve_seed_differs", a != c2, "seeds 123 and 124 gave the same %r" % a)

    # experts_per_token: reported, changes the output, equals moe run's
    st, _, body = raw(srv, "POST", "/v1/completions", json.dumps(
        {"model": mid, "prompt": prompt, "max_tokens": 16, "temperature": 0, "experts_per_token": 1}))
    j = json.loads(body) if st == 200 else {}
    rc, ref1, _ = moe_run(model, prompt, 16, "--experts-per-token", "1")
    t1 = j.get("choices", [{}])[0].get("text")
    ck.check("serve_experts_per_token", st == 200 and j.get("experts_per_token") == 1 and t1 == ref1
             and t1 != text, "status %d k %r text %r, moe run k=1 %r, k=2 %r" %
             (st, j.get("experts_per_token"), t1, ref1, text))
    r3 = client.completions.create(model=mid, prompt=prompt, max_tokens=4, temperature=0)
    ck.check("serve_experts_default_reported", (r3.model_extra or {}).get("experts_per_token") == 2,
             "%r" % r3.model_extra)
    return text


def test_concurrent(srv, client, model):
    mid = srv.model_id
    prompts = ["Once upon a time %d" % i for i in range(8)]
    alone = [complete(client, mid, p, 24).choices[0].text for p in prompts]
    got = [None] * 8
    errs = []

    def worker(i):
        try:
            got[i] = complete(client, mid, prompts[i], 24).choices[0].text
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    ck.check("serve_8_concurrent_equal_alone", not errs and got == alone,
             "errors %s; differ at %s" % (errs[:2], [i for i in range(8) if got[i] != alone[i]]))
    bad = []
    for i in (0, 3, 7):
        rc, ref, _ = moe_run(model, prompts[i], 24)
        if rc != 0 or ref != got[i]:
            bad.append((i, got[i], ref))
    ck.check("serve_8_concurrent_equal_moe_run", not bad, "%r" % bad[:1])


CORPUS = [
    ("bad_json", "/v1/completions", '{"prompt": "a", ', 400),
    ("bad_json_chat", "/v1/chat/completions", '{"messages": [}', 400),
    ("empty_body", "/v1/completions", "", 400),
    ("array_root", "/v1/completions", "[1, 2]", 400),
    ("prompt_number", "/v1/completions", '{"prompt": 5}', 400),
    ("max_tokens_string", "/v1/completions", '{"prompt": "a", "max_tokens": "x"}', 400),
    ("temperature_string", "/v1/completions", '{"prompt": "a", "temperature": "hot"}', 400),
    ("stream_string", "/v1/completions", '{"prompt": "a", "stream": "yes"}', 400),
    ("messages_string", "/v1/chat/completions", '{"messages": "hi"}', 400),
    ("messages_empty", "/v1/chat/completions", '{"messages": []}', 400),
    ("message_bad_role", "/v1/chat/completions", '{"messages": [{"role": "wizard", "content": "x"}]}', 400),
    ("message_content_number", "/v1/chat/completions", '{"messages": [{"role": "user", "content": 7}]}', 400),
    ("huge_max_tokens", "/v1/completions", '{"prompt": "a", "max_tokens": 1e300}', 400),
    ("overflow_number", "/v1/completions", '{"prompt": "a", "max_tokens": 1e400}', 400),
    ("huge_seed", "/v1/completions", '{"prompt": "a", "seed": 1e30}', 400),
    ("fraction_max_tokens", "/v1/completions", '{"prompt": "a", "max_tokens": 2.5}', 400),
    ("negative_max_tokens", "/v1/completions", '{"prompt": "a", "max_tokens": -5}', 400),
    ("zero_max_tokens", "/v1/completions", '{"prompt": "a", "max_tokens": 0}', 400),
    ("max_tokens_beyond_ctx", "/v1/completions", '{"prompt": "a", "max_tokens": 100000}', 400),
    ("temperature_negative", "/v1/completions", '{"prompt": "a", "temperature": -1}', 400),
    ("top_p_zero", "/v1/completions", '{"prompt": "a", "top_p": 0}', 400),
    ("unknown_field", "/v1/completions", '{"prompt": "a", "frobnicate": 1}', 400),
    ("unknown_field_chat", "/v1/chat/completions",
     '{"messages": [{"role": "user", "content": "x"}], "prompt": "a"}', 400),
    ("unknown_model", "/v1/completions", '{"model": "gpt-9", "prompt": "a"}', 404),
    ("n_two", "/v1/completions", '{"prompt": "a", "n": 2}', 400),
    ("experts_zero", "/v1/completions", '{"prompt": "a", "experts_per_token": 0}', 400),
    ("experts_too_many", "/v1/completions", '{"prompt": "a", "experts_per_token": 99}', 400),
    ("stop_too_many", "/v1/completions", '{"prompt": "a", "stop": ["a","b","c","d","e"]}', 400),
    ("stop_empty", "/v1/completions", '{"prompt": "a", "stop": ""}', 400),
    ("nul_in_prompt", "/v1/completions", '{"prompt": "a\\u0000b"}', 400),
    ("lone_surrogate", "/v1/completions", '{"prompt": "\\ud800"}', 400),
    ("token_id_out_of_range", "/v1/completions", '{"prompt": [1, 999999]}', 400),
    ("deep_nesting", "/v1/completions", '{"prompt": "a", "user": ' + "[" * 5000 + "]" * 5000 + "}", 400),
    ("logprobs", "/v1/completions", '{"prompt": "a", "logprobs": true}', 400),
    ("unknown_path", "/v1/embeddings", '{"input": "a"}', 404),
    ("unknown_path_root", "/", "", 404),
]


def test_corpus(srv, model_id):
    bad = []
    for name, path, body, want in CORPUS:
        st, hd, data = raw(srv, "POST" if path != "/" else "GET", path, body)
        if st != want or not is_error_json(data) or "application/json" not in hd.get("content-type", ""):
            bad.append("%s: %d (want %d) %r" % (name, st, want, data[:120]))
    # invalid UTF-8 in a string, raw bytes
    st, _, data = raw(srv, "POST", "/v1/completions", b'{"prompt": "a\xff\xfeb"}')
    if st != 400 or not is_error_json(data):
        bad.append("invalid_utf8: %d %r" % (st, data[:100]))
    st, _, data = raw(srv, "GET", "/v1/completions")
    if st != 405 or not is_error_json(data):
        bad.append("get_on_post: %d %r" % (st, data[:100]))
    st, _, data = raw(srv, "GET", "/v1/models/nope")
    if st != 404 or not is_error_json(data):
        bad.append("unknown_model_get: %d %r" % (st, data[:100]))
    # over the body limit (the server runs with --max-body 65536)
    big = json.dumps({"prompt": "x" * 70000})
    st, _, data = raw(srv, "POST", "/v1/completions", big)
    if st != 413 or not is_error_json(data):
        bad.append("oversize_body: %d %r" % (st, data[:100]))
    ck.check("serve_malformed_corpus", not bad, "; ".join(bad[:4]))
    ck.check("serve_alive_after_corpus", srv.alive() and raw(srv, "GET", "/health")[0] == 200,
             "the server died: %s" % srv.stderr()[-500:])


def mutate(rnd, text):
    b = bytearray(text.encode())
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        i = rnd.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] = rnd.randrange(256)
        elif op == 1 and b:
            del b[i:i + rnd.randint(1, 8)]
        elif op == 2:
            b[i:i] = rnd.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\\u", b"-",
                                  b"1e999", b"null", b"true", b"9" * 30, b"\xc3", b"\xff", b"\x00",
                                  b'"max_tokens":', b'"stream":true,', b"  "])
        elif op == 3:
            b = b[:rnd.randrange(len(b) + 1)]
        elif op == 4 and len(b) > 2:
            j = rnd.randrange(len(b))
            b[i], b[j] = b[j], b[i]
        elif op == 5:
            b = b.replace(rnd.choice([b"2", b"0", b"1"]), rnd.choice([b"-1", b"3.5", b'"2"', b"[]", b"{}", b"1e20"]), 1)
        else:
            b = b.replace(b'"', b"'", 1)
    return bytes(b)


def test_mutations(srv, mid, ref_text):
    rnd = random.Random(1234)
    bases = [
        json.dumps({"model": mid, "prompt": "The cat sat on", "max_tokens": 2, "temperature": 0}),
        json.dumps({"model": mid, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                    "temperature": 0.5, "top_p": 0.9, "seed": 1, "stop": ["\n"]}),
        json.dumps({"prompt": [1, 2, 3], "max_tokens": 2, "top_k": 5, "min_p": 0.1,
                    "presence_penalty": 0.5, "frequency_penalty": 0.2, "experts_per_token": 1}),
    ]
    paths = ["/v1/completions", "/v1/chat/completions", "/v1/completions"]
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    counts = {}
    bad = []
    for i in range(1000):
        k = rnd.randrange(3)
        body = mutate(rnd, bases[k])
        try:
            conn.request("POST", paths[k], body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            st = r.status
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
            bad.append("#%d %r: %r" % (i, body[:80], e))
            continue
        counts[st] = counts.get(st, 0) + 1
        if st == 200:
            ok = data.rstrip().endswith(b"data: [DONE]") or "choices" in json.loads(data)
        else:
            ok = 400 <= st < 600 and is_error_json(data)
        if not ok:
            bad.append("#%d %r -> %d %r" % (i, body[:80], st, data[:80]))
    conn.close()
    ck.check("serve_1000_mutations", not bad and srv.alive(),
             "%d bad (%s); statuses %s; alive %s" % (len(bad), "; ".join(bad[:3]), counts, srv.alive()),
             "statuses %s" % counts)
    st, _, data = raw(srv, "POST", "/v1/completions", json.dumps(
        {"model": mid, "prompt": "The cat sat on", "max_tokens": 16, "temperature": 0}))
    ck.check("serve_same_answer_after_mutations", st == 200 and json.loads(data)["choices"][0]["text"] == ref_text,
             "%d %r vs %r" % (st, data[:200], ref_text))


def test_slow_drip(srv):
    # a slow-drip client (a header byte every 0.25 s) is cut off after the
    # timeout (2 s) while the server keeps answering others
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time()
    closed = False
    served = True
    s.settimeout(0.05)
    while time.time() - t0 < 8:
        try:
            s.sendall(b"X")
        except OSError:
            closed = True
            break
        try:
            if s.recv(1) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
        if time.time() - t0 < 1.0 and raw(srv, "GET", "/health")[0] != 200:
            served = False
        time.sleep(0.25)
    s.close()
    ck.check("serve_slow_drip_cut", closed and served and time.time() - t0 > 1.5,
             "closed %s after %.1f s, others served %s" % (closed, time.time() - t0, served))


def test_gone(srv, mid):
    # a client that leaves mid-stream frees its sequence
    def metric(name):
        _, _, body = raw(srv, "GET", "/metrics")
        m = re.search(rb"^" + re.escape(name.encode()) + rb" (\S+)$", body, re.M)
        return float(m.group(1)) if m else -1
    before = metric('moe_requests_total{outcome="cancelled"}')
    c = socket.create_connection((srv.host, srv.port))
    body = json.dumps({"model": mid, "prompt": "x", "max_tokens": 2000, "stream": True,
                       "temperature": 1.0, "seed": 3, "ignore_eos": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    c.recv(200)
    c.close()
    t0 = time.time()
    while time.time() - t0 < 10:
        if metric("moe_running_sequences") == 0:
            break
        time.sleep(0.05)
    after = metric('moe_requests_total{outcome="cancelled"}')
    running = metric("moe_running_sequences")
    ck.check("serve_disconnect_frees_sequence", running == 0 and after == before + 1,
             "running %s, cancelled %s -> %s" % (running, before, after),
             "cancelled %d -> %d" % (before, after))


def test_big_headers(srv):
    # request headers over the 64 KiB limit get an OpenAI-shaped 431, not
    # libmicrohttpd's HTML page, and the server keeps answering
    got = []
    for size in (70 * 1024, 200 * 1024):
        try:
            st, hd, data = raw(srv, "POST", "/v1/completions", '{"prompt": "a"}',
                               headers={"X-Big": "b" * size})
            got.append((size, st, hd.get("content-type", ""), is_error_json(data)))
        except Exception as e:  # the server closed the connection without an answer
            got.append((size, repr(e)[:80], "", False))
    ok = all(len(g) == 4 and g[1] == 431 and g[2].startswith("application/json") and g[3] for g in got)
    ck.check("serve_big_headers_431_json", ok and raw(srv, "GET", "/health")[0] == 200, str(got))


def test_queue_full(model):
    srv = Server(model, "--parallel", "1", "--queue", "1", "--ctx", "2048", "--timeout", "2")
    try:
        test_slow_drip(srv)
        test_gone(srv, srv.model_id)
        test_big_headers(srv)
        res = []
        lock = threading.Lock()

        def worker():
            st, hd, data = raw(srv, "POST", "/v1/completions", json.dumps(
                {"prompt": "y", "max_tokens": 1500, "temperature": 0.8, "seed": 9}), timeout=120)
            with lock:
                res.append((st, hd.get("retry-after"), is_error_json(data) if st != 200 else True))
        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(180)
        n503 = sum(1 for st, ra, ok in res if st == 503 and ra and ok)
        n200 = sum(1 for st, _, _ in res if st == 200)
        ck.check("serve_queue_full_503", n503 >= 1 and n503 + n200 == 8 and n200 >= 2,
                 "answers %r" % res, "%d of 8 got 503 + Retry-After" % n503)
    finally:
        srv.stop()
    return srv


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def test_load(srv, client, mid):
    """64 streaming clients: a warm-up wave of one request each, then two
    waves of two each. The waves stop starting requests at a fixed deadline
    (a loaded machine may get there first: those requests are counted as not
    run, not as errors, and at least the first measured wave must finish)."""
    n_clients = 64
    ttft, itl, errors = [], [], []
    ran = [0]
    lock = threading.Lock()
    deadline = time.time() + 100

    def one(i, j):
        t0 = time.time()
        last = None
        first = None
        for ch in client.completions.create(model=mid, prompt="Load %d %d" % (i, j), max_tokens=8,
                                            temperature=0.7, seed=i * 10 + j, stream=True, timeout=120):
            now = time.time()
            if ch.choices and ch.choices[0].text:
                if first is None:
                    first = now - t0
                elif last is not None:
                    with lock:
                        itl.append(now - last)
                last = now
        with lock:
            ran[0] += 1
            if first is not None:
                ttft.append(first)

    def worker(i, n_req):
        for j in range(n_req):
            if time.time() > deadline:
                return
            try:
                one(i, j)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e)[:200])

    def wave(n_req):
        ts = [threading.Thread(target=worker, args=(i, n_req)) for i in range(n_clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(max(1, deadline - time.time() + 130))
    wave(1)  # warm-up (threads, buffers, allocator)
    rss0 = srv.rss_kib()
    ran[0] = 0
    ttft.clear()
    itl.clear()
    wave(2)
    first_wave = ran[0]
    wave(2)
    rss1 = srv.rss_kib()
    ck.check("serve_load_64_streams", not errors and srv.alive() and first_wave == 2 * n_clients,
             "%d errors: %s; first wave ran %d of %d" % (len(errors), errors[:3], first_wave, 2 * n_clients),
             "%d of %d requests ran before the deadline, 0 errors" % (ran[0], 4 * n_clients))
    ck.check("serve_load_rss_flat", rss1 <= rss0 * 1.10 + 8192,
             "resident memory %d KiB after warm-up, %d KiB after two more waves" % (rss0, rss1),
             "%d -> %d KiB" % (rss0, rss1))
    ck.note("load: 64 streaming clients x 2 requests x 2 waves after warm-up, 8 tokens each: TTFT p50 %.1f ms "
            "p99 %.1f ms; inter-chunk p50 %.2f ms p99 %.2f ms (loaded shared machine, --threads 1, tiny model)" %
            (pct(ttft, 0.5) * 1e3, pct(ttft, 0.99) * 1e3, pct(itl, 0.5) * 1e3, pct(itl, 0.99) * 1e3))


def test_sigterm(model):
    srv = Server(model, "--drain", "20")
    c = socket.create_connection((srv.host, srv.port))
    body = json.dumps({"prompt": "z", "max_tokens": 60, "stream": True, "temperature": 0}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    first = c.recv(100)
    srv.p.send_signal(signal.SIGTERM)
    data = first
    c.settimeout(30)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
            if b"[DONE]" in data:
                break
    except OSError:
        pass
    c.close()
    try:
        rc = srv.p.wait(timeout=40)
    except subprocess.TimeoutExpired:
        rc = None
    srv.stop()
    ck.check("serve_sigterm_graceful", rc == 0 and b"data: [DONE]" in data and b'"error"' not in data,
             "exit %r, stream %r" % (rc, data[-200:]))
    return srv


def sanitizer_clean(name, srv):
    err = srv.stderr()
    bad = re.search(r"(AddressSanitizer|runtime error|LeakSanitizer|UndefinedBehavior)", err)
    ck.check("serve_no_sanitizer_report_" + name, bad is None, err[-800:])


def main():
    if openai is None:
        msg = "the openai package is not installed (pip install openai)"
        print(("FAIL" if CI else "SKIPPED") + " serve_openai: " + msg)
        return 1 if CI else 0
    if not os.path.exists(MOE):
        print("FAIL serve: %s missing" % MOE)
        return 1
    tmp = tempfile.mkdtemp(prefix="test_serve_")
    model = os.path.join(tmp, "mix.gguf")
    p = subprocess.run([MOE, "synth", model, "--arch", "mixtral", "--experts", "8", "--k", "2",
                        "--seed", "11"], capture_output=True)
    if not ck.check("serve_synth", p.returncode == 0, p.stderr.decode()[-300:]):
        return 1
    servers = []
    try:
        srv = Server(model, "--parallel", "8", "--ctx", "256", "--max-body", "65536")
        servers.append(srv)
        client = openai.OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0, timeout=120)
        text = test_basic(srv, client, model)
        test_concurrent(srv, client, model)
        test_corpus(srv, srv.model_id)
        test_mutations(srv, srv.model_id, text)
        test_load(srv, client, srv.model_id)
        ck.check("serve_alive_at_end", srv.alive(), srv.stderr()[-500:])
        srv.stop(signal.SIGTERM)
        sanitizer_clean("main", srv)
        servers.append(test_queue_full(model))
        sanitizer_clean("queue", servers[-1])
        servers.append(test_sigterm(model))
        sanitizer_clean("sigterm", servers[-1])
    except Exception as e:  # noqa: BLE001
        ck.fail("serve_exception", repr(e)[:500])
    finally:
        for s in servers:
            s.stop()
        subprocess.run(["rm", "-rf", tmp])
    n, failed = ck.counts()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
