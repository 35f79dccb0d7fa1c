#!/usr/bin/env python3
"""Independent numpy reference for the MemGen memory weaver and memory trigger (float64 math).

Used to produce golden files for the Java (DJL) tests, llm.c style. Only Python 3 + numpy.
The frozen base model (Qwen2 / Llama, Hugging Face layout) is read and run by hf_reference.py,
which this script imports; here live the LoRA adapters, the weaver and the trigger.

  LoRA:    y = x W^T + b + (alpha / r) * (x A^T) B^T     A [r, in], B [out, r]; no dropout at inference
  weave:   x = concat(reasoner_to_weaver(rows), LayerNorm_kind(Q_kind) * scale_kind)    [T + K, h]
           latents = weaver_to_reasoner(final-norm hidden of the weaver-LoRA'd base over x)[-K:]
  trigger: p_invoke = softmax(head(final-norm hidden of the trigger-LoRA'd base, last position))[1]

A memory checkpoint is a directory with memory.safetensors (F32) and manifest.json; see
`memory_shapes` for the tensor names and `make_manifest` for the manifest.

Commands:
  make-memory   write a random memory (every tensor non-trivial, LoRA B != 0 unless --zero-lora-b)
  weave         latents for a prefix of rows / token ids; prints {"latents": [[h] x K]}
  trigger       prints {"p_invoke": p, "logits": [2]}
  lora-forward  the LoRA'd base alone; prints {"hidden": [h], "logits": [vocab]} of the last position
  selftest      consistency checks

Bad input: message on stderr, exit status 2. Run `python3 memgen_reference.py <command> -h`.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as hf  # noqa: E402

ReferenceError = hf.ReferenceError

FORMAT = "memgen-memory"
FORMAT_VERSION = 1
MEMORY_FILE = "memory.safetensors"
MANIFEST_FILE = "manifest.json"
LN_EPS = 1e-5
DEFAULT_DELIMITERS = [",", ".", "\n"]
DEFAULT_MAX_INFERENCE_AUG = 5
DROPOUT = 0.1  # recorded in the manifest for training; never applied here (inference)
KINDS = ("prompt", "inference")
WHICH = ("weaver", "trigger")

# LoRA target module -> the block it lives in (HF names)
TARGET_GROUP = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


# ----------------------------------------------------------------------------
# shapes and names

def target_features(d, target):
    """-> (in_features, out_features) of a base linear layer."""
    q_out, kv_out = d.heads * d.head_dim, d.kv_heads * d.head_dim
    return {"q_proj": (d.hidden, q_out), "k_proj": (d.hidden, kv_out), "v_proj": (d.hidden, kv_out),
            "o_proj": (q_out, d.hidden), "gate_proj": (d.hidden, d.inter), "up_proj": (d.hidden, d.inter),
            "down_proj": (d.inter, d.hidden)}[target]


def lora_prefix(which, layer, target):
    """e.g. weaver.lora.layers.0.self_attn.q_proj (the base module is model.layers.0.self_attn.q_proj)."""
    return f"{which}.lora.layers.{layer}.{TARGET_GROUP[target]}.{target}"


def lora_shapes(d, which, lora):
    shapes = {}
    for i in range(d.layers):
        for t in lora["targets"]:
            fin, fout = target_features(d, t)
            shapes[lora_prefix(which, i, t) + ".lora_A"] = (lora["r"], fin)
            shapes[lora_prefix(which, i, t) + ".lora_B"] = (fout, lora["r"])
    return shapes


def memory_shapes(d, manifest):
    """Ordered dict: tensor name -> shape, for a memory described by `manifest` on base Dims d."""
    h, w = d.hidden, manifest["weaver"]
    shapes = lora_shapes(d, "weaver", w["lora"])
    shapes.update({
        "weaver.reasoner_to_weaver.weight": (h, h), "weaver.reasoner_to_weaver.bias": (h,),
        "weaver.weaver_to_reasoner.weight": (h, h), "weaver.weaver_to_reasoner.bias": (h,),
    })
    for kind, k in (("prompt", w["prompt_k"]), ("inference", w["inference_k"])):
        shapes[f"weaver.{kind}_queries"] = (k, h)
        shapes[f"weaver.{kind}_query_norm.weight"] = (h,)
        shapes[f"weaver.{kind}_query_norm.bias"] = (h,)
        shapes[f"weaver.{kind}_query_scale"] = (1,)
    shapes.update(lora_shapes(d, "trigger", manifest["trigger"]["lora"]))
    shapes["trigger.head.weight"] = (2, h)
    shapes["trigger.head.bias"] = (2,)
    return shapes


def make_manifest(d, prompt_k, inference_k, weaver_lora, trigger_lora, fingerprint=""):
    def lora(c):
        return {"r": c["r"], "alpha": float(c["alpha"]), "targets": list(c["targets"]), "dropout": DROPOUT}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "version": 1,
            "base_fingerprint": fingerprint, "hidden_size": d.hidden, "num_layers": d.layers,
            "weaver": {"prompt_k": prompt_k, "inference_k": inference_k, "input": "embeddings",
                       "lora": lora(weaver_lora)},
            "trigger": {"lora": lora(trigger_lora)},
            "delimiters": list(DEFAULT_DELIMITERS), "max_inference_aug": DEFAULT_MAX_INFERENCE_AUG}


# ----------------------------------------------------------------------------
# manifest validation

def _positive_int(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ReferenceError(f"{what} must be a positive integer, got {v!r}")
    return v


def _check_lora(c, what):
    if not isinstance(c, dict):
        raise ReferenceError(f"{what} must be an object")
    for key in ("r", "alpha", "targets"):
        if key not in c:
            raise ReferenceError(f"{what}: missing key '{key}'")
    _positive_int(c["r"], f"{what}.r")
    a = c["alpha"]
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
        raise ReferenceError(f"{what}.alpha must be a number, got {a!r}")
    t = c["targets"]
    if not isinstance(t, list) or not t:
        raise ReferenceError(f"{what}.targets must be a non-empty list")
    bad = [x for x in t if x not in TARGET_GROUP]
    if bad:
        raise ReferenceError(f"{what}.targets: unknown modules {bad}; known: {list(TARGET_GROUP)}")
    if len(set(t)) != len(t):
        raise ReferenceError(f"{what}.targets has duplicates: {t}")


def check_manifest(m, d, where):
    if not isinstance(m, dict):
        raise ReferenceError(f"{where}: manifest must be a JSON object")
    if m.get("format") != FORMAT:
        raise ReferenceError(f"{where}: format is {m.get('format')!r}, expected {FORMAT!r}")
    if m.get("format_version") != FORMAT_VERSION:
        raise ReferenceError(f"{where}: unsupported format_version {m.get('format_version')!r} "
                             f"(this reference reads {FORMAT_VERSION})")
    for key in ("hidden_size", "num_layers", "weaver", "trigger"):
        if key not in m:
            raise ReferenceError(f"{where}: missing key '{key}'")
    if m["hidden_size"] != d.hidden:
        raise ReferenceError(f"{where}: hidden_size {m['hidden_size']} does not match the base model's "
                             f"hidden_size {d.hidden}")
    if m["num_layers"] != d.layers:
        raise ReferenceError(f"{where}: num_layers {m['num_layers']} does not match the base model's "
                             f"num_hidden_layers {d.layers}")
    w = m["weaver"]
    if not isinstance(w, dict):
        raise ReferenceError(f"{where}: weaver must be an object")
    for key in ("prompt_k", "inference_k", "lora"):
        if key not in w:
            raise ReferenceError(f"{where}: weaver: missing key '{key}'")
    _positive_int(w["prompt_k"], f"{where}: weaver.prompt_k")
    _positive_int(w["inference_k"], f"{where}: weaver.inference_k")
    if w.get("input", "embeddings") != "embeddings":
        raise ReferenceError(f"{where}: weaver.input {w.get('input')!r} is not supported "
                             f"(this reference implements 'embeddings')")
    _check_lora(w["lora"], f"{where}: weaver.lora")
    if not isinstance(m["trigger"], dict) or "lora" not in m["trigger"]:
        raise ReferenceError(f"{where}: trigger.lora missing")
    _check_lora(m["trigger"]["lora"], f"{where}: trigger.lora")


# ----------------------------------------------------------------------------
# the memory

class Memory:
    """manifest + tensors (float64), checked against the base model's Dims."""

    def __init__(self, manifest, tensors, d):
        self.manifest, self.T, self.d = manifest, tensors, d

    def lora(self, which):
        return self.manifest[which]["lora"]

    def k(self, kind):
        return self.manifest["weaver"][f"{kind}_k"]


def load_memory(mem_dir, d):
    if not os.path.isdir(mem_dir):
        raise ReferenceError(f"memory directory not found: {mem_dir}")
    mpath = os.path.join(mem_dir, MANIFEST_FILE)
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except OSError as e:
        raise ReferenceError(f"cannot read {mpath}: {e}")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{mpath}: invalid JSON: {e}")
    check_manifest(manifest, d, mpath)
    tpath = os.path.join(mem_dir, MEMORY_FILE)
    if not os.path.isfile(tpath):
        raise ReferenceError(f"{mem_dir}: {MEMORY_FILE} not found")
    raw = hf.load_safetensors(tpath)
    shapes = memory_shapes(d, manifest)
    missing = [n for n in shapes if n not in raw]
    if missing:
        raise ReferenceError(f"{tpath}: missing tensors ({len(missing)}): {missing[:6]}")
    extra = [n for n in raw if n not in shapes]
    if extra:
        raise ReferenceError(f"{tpath}: unexpected tensors (not implied by the manifest): {extra[:6]}")
    T = {}
    for name, shape in shapes.items():
        if tuple(raw[name].shape) != shape:
            raise ReferenceError(f"{tpath}: tensor {name} has shape {list(raw[name].shape)}, "
                                 f"expected {list(shape)}")
        a = raw[name].astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ReferenceError(f"{tpath}: tensor {name} holds non-finite values")
        T[name] = a
    return Memory(manifest, T, d)


def init_memory_tensor(rng, name, shape, d):
    """make-memory init: lora_A N(0, 1/sqrt(in)), lora_B N(0, 0.5/sqrt(r)), projections N(0, 1/sqrt(in)),
    queries N(0, 1), norm weights and scales 1 + N(0, 0.1), biases N(0, 0.1), trigger head N(0, 1/sqrt(h))."""
    z = rng.standard_normal(shape)
    if name.endswith(".lora_A"):
        return z / math.sqrt(shape[1])
    if name.endswith(".lora_B"):
        return 0.5 / math.sqrt(shape[1]) * z
    if name in ("weaver.reasoner_to_weaver.weight", "weaver.weaver_to_reasoner.weight"):
        return z / math.sqrt(shape[1])
    if name.endswith("_queries"):
        return z
    if name.endswith("norm.weight") or name.endswith("_query_scale"):
        return 1.0 + 0.1 * z
    if name == "trigger.head.weight":
        return z / math.sqrt(d.hidden)
    if name.endswith(".bias"):
        return 0.1 * z
    raise AssertionError(f"no init rule for {name}")


def random_memory_tensors(d, manifest, seed, zero_lora_b=False):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in memory_shapes(d, manifest).items():
        a = init_memory_tensor(rng, name, shape, d)  # always drawn: the stream does not depend on zero_lora_b
        if zero_lora_b and name.endswith(".lora_B"):
            a = np.zeros(shape)
        out[name] = a.astype(np.float32)
    return out


def write_memory(out_dir, manifest, tensors):
    os.makedirs(out_dir, exist_ok=True)
    hf.write_safetensors(os.path.join(out_dir, MEMORY_FILE), tensors, "F32")
    with open(os.path.join(out_dir, MANIFEST_FILE), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------
# the networks (float64)

def lora_delta(x, A, B, alpha, r):
    """(alpha / r) * (x A^T) B^T; x (T, in), A (r, in), B (out, r)."""
    return (alpha / r) * ((x @ A.T) @ B.T)


def lora_hook(mem, which):
    """A hf_reference delta hook adding `which`'s LoRA update to its target modules."""
    c = mem.lora(which)
    r, alpha, T = c["r"], float(c["alpha"]), mem.T
    def delta(module, x):
        # module: model.layers.{i}.{self_attn|mlp}.{name}
        key = f"{which}.lora.{module[len('model.'):]}"
        A = T.get(key + ".lora_A")
        return None if A is None else lora_delta(x, A, T[key + ".lora_B"], alpha, r)
    return delta


def lora_forward_embeds(x, W, d, mem, which):
    """-> (logits, final-norm hidden), each (T, .), of the `which`-LoRA'd base over embeddings x."""
    return hf.forward_embeds(x, W, d, lora_hook(mem, which))


def layer_norm(x, w, b, eps=LN_EPS):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mu) / np.sqrt(var + eps) * w + b


def weaver_inputs(rows, mem, kind):
    """(T + K, h): reasoner_to_weaver(rows) followed by LayerNorm(Q) * scale."""
    T = mem.T
    x = hf.linear(rows, T["weaver.reasoner_to_weaver.weight"], T["weaver.reasoner_to_weaver.bias"])
    q = layer_norm(T[f"weaver.{kind}_queries"], T[f"weaver.{kind}_query_norm.weight"],
                   T[f"weaver.{kind}_query_norm.bias"]) * T[f"weaver.{kind}_query_scale"][0]
    return np.concatenate([x, q], axis=0)


def weave(rows, W, d, mem, kind):
    """rows (T >= 1, h) -> (latents (K, h), debug dict)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] != d.hidden:
        raise ReferenceError(f"weave needs rows of shape [T >= 1, {d.hidden}], got {list(rows.shape)}")
    if kind not in KINDS:
        raise ReferenceError(f"kind must be one of {KINDS}, got {kind!r}")
    K = mem.k(kind)
    x = weaver_inputs(rows, mem, kind)
    _, hidden = lora_forward_embeds(x, W, d, mem, "weaver")
    qh = hidden[-K:]
    lat = hf.linear(qh, mem.T["weaver.weaver_to_reasoner.weight"], mem.T["weaver.weaver_to_reasoner.bias"])
    return lat, {"weaver_inputs": x, "query_hidden": qh, "all_hidden": hidden}


def trigger(ids, W, d, mem):
    """-> (p_invoke, logits (2,), last final-norm hidden (h,))."""
    x = hf.embed(list(ids), W, d)
    _, hidden = lora_forward_embeds(x, W, d, mem, "trigger")
    logits = hf.linear(hidden[-1], mem.T["trigger.head.weight"], mem.T["trigger.head.bias"])
    return float(hf.softmax(logits)[1]), logits, hidden[-1]


# ----------------------------------------------------------------------------
# input parsing

def parse_ids(text, d, allow_empty=False):
    try:
        ids = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ReferenceError(f"--ids must be comma-separated integers, got {text!r}")
    if not ids and not allow_empty:
        raise ReferenceError("--ids is empty")
    check_ids(ids, d, "--ids")
    return ids


def check_ids(ids, d, what):
    for i, t in enumerate(ids):
        if isinstance(t, bool) or not isinstance(t, int):
            raise ReferenceError(f"{what}[{i}]: expected an integer token id, got {t!r}")
        if not 0 <= t < d.vocab:
            raise ReferenceError(f"{what}[{i}]: token id {t} out of range [0, {d.vocab})")


def check_rows(rows, d, what):
    if not isinstance(rows, list):
        raise ReferenceError(f"{what} must be a JSON list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise ReferenceError(f"{what}[{i}]: expected a list of {d.hidden} floats, got {type(row).__name__}")
        if len(row) != d.hidden:
            raise ReferenceError(f"{what}[{i}]: row has {len(row)} values, expected hidden_size {d.hidden}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row):
            raise ReferenceError(f"{what}[{i}]: row must hold finite numbers")


def rows_from_json(obj, W, d, where):
    """A JSON list of rows, or {"ids": [...], "rows": [...]} (ids embedded first, then the rows)."""
    if isinstance(obj, list):
        ids, rows = [], obj
    elif isinstance(obj, dict):
        unknown = set(obj) - {"ids", "rows"}
        if unknown:
            raise ReferenceError(f"{where}: unknown keys {sorted(unknown)} (expected 'ids' and/or 'rows')")
        ids, rows = obj.get("ids", []), obj.get("rows", [])
        if not isinstance(ids, list):
            raise ReferenceError(f"{where}: 'ids' must be a list of token ids")
    else:
        raise ReferenceError(f"{where}: expected a JSON list of rows or an object with 'ids'/'rows'")
    check_ids(ids, d, f"{where}: ids")
    check_rows(rows, d, f"{where}: rows")
    if not ids and not rows:
        raise ReferenceError(f"{where}: the prefix is empty (need at least one id or row)")
    parts = []
    if ids:
        parts.append(W["model.embed_tokens.weight"][ids])
    if rows:
        parts.append(np.asarray(rows, dtype=np.float64))
    return np.concatenate(parts, axis=0)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ReferenceError(f"cannot read {path}: {e}")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{path}: invalid JSON: {e}")


# ----------------------------------------------------------------------------
# commands

def parse_targets(text, flag):
    t = [s.strip() for s in text.split(",") if s.strip()]
    if not t:
        raise ReferenceError(f"{flag} is empty")
    return t


def cmd_make_memory(args):
    d, _ = hf.load_model(args.model)
    targets = parse_targets(args.targets, "--targets")
    ttargets = parse_targets(args.trigger_targets, "--trigger-targets") if args.trigger_targets else targets
    trigger_r = args.trigger_r if args.trigger_r is not None else args.r
    trigger_alpha = args.trigger_alpha if args.trigger_alpha is not None else args.alpha
    manifest = make_manifest(d, args.prompt_k, args.inference_k,
                             {"r": args.r, "alpha": args.alpha, "targets": targets},
                             {"r": trigger_r, "alpha": trigger_alpha, "targets": ttargets},
                             args.fingerprint)
    check_manifest(manifest, d, "make-memory")
    write_memory(args.out, manifest, random_memory_tensors(d, manifest, args.seed, args.zero_lora_b))


def load_all(args):
    d, W = hf.load_model(args.model)
    return d, W, load_memory(args.memory, d)


def cmd_weave(args):
    d, W, mem = load_all(args)
    rows = rows_from_json(read_json(args.rows), W, d, args.rows)
    lat, dbg = weave(rows, W, d, mem, args.kind)
    out = {"latents": lat.tolist()}
    if args.all:
        out["weaver_inputs"] = dbg["weaver_inputs"].tolist()
        out["query_hidden"] = dbg["query_hidden"].tolist()
    sys.stdout.write(json.dumps(out) + "\n")


def cmd_trigger(args):
    d, W, mem = load_all(args)
    p, logits, _ = trigger(parse_ids(args.ids, d), W, d, mem)
    sys.stdout.write(json.dumps({"p_invoke": p, "logits": logits.tolist()}) + "\n")


def cmd_lora_forward(args):
    d, W, mem = load_all(args)
    ids = parse_ids(args.ids, d)
    logits, hidden = lora_forward_embeds(hf.embed(ids, W, d), W, d, mem, args.which)
    out = {"hidden": hidden[-1].tolist(), "logits": logits[-1].tolist()}
    if args.all:
        out["all_hidden"] = hidden.tolist()
        out["all_logits"] = logits.tolist()
    sys.stdout.write(json.dumps(out) + "\n")


# ----------------------------------------------------------------------------
# selftest

def naive_lora_linear(x, Wt, b, A, B, alpha, r):
    """Loop-by-loop y[t, o] = sum_i x[t,i] W[o,i] + b[o] + alpha/r * sum_j B[o,j] sum_i A[j,i] x[t,i]."""
    T, n_in = x.shape
    n_out = Wt.shape[0]
    y = np.zeros((T, n_out))
    for t in range(T):
        ax = [sum(A[j, i] * x[t, i] for i in range(n_in)) for j in range(r)]
        for o in range(n_out):
            s = sum(x[t, i] * Wt[o, i] for i in range(n_in)) + (0.0 if b is None else b[o])
            s += alpha / r * sum(B[o, j] * ax[j] for j in range(r))
            y[t, o] = s
    return y


def naive_layer_norm(v, w, b):
    n = len(v)
    mu = sum(v) / n
    var = sum((u - mu) ** 2 for u in v) / n
    return np.array([(v[i] - mu) / math.sqrt(var + LN_EPS) * w[i] + b[i] for i in range(n)])


def merged_weights(W, mem, which):
    """The base weights with `which`'s LoRA folded in: W + (alpha / r) B A."""
    c = mem.lora(which)
    M = dict(W)
    for i in range(mem.d.layers):
        for t in c["targets"]:
            key = lora_prefix(which, i, t)
            name = f"model.layers.{i}.{TARGET_GROUP[t]}.{t}.weight"
            M[name] = W[name] + c["alpha"] / c["r"] * (mem.T[key + ".lora_B"] @ mem.T[key + ".lora_A"])
    return M


def run_cli(argv):
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(argv)
    text = buf.getvalue()
    return json.loads(text) if text else None


def cmd_selftest(args):
    n_checks = [0]
    def check(cond, what):
        n_checks[0] += 1
        if not cond:
            raise AssertionError("selftest failed: " + what)
        print("ok  " + what, file=sys.stderr)
    def maxdiff(a, b):
        return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))

    rng = np.random.default_rng(11)
    all_targets = ",".join(TARGET_GROUP)
    with tempfile.TemporaryDirectory() as tmp:
        bases = {}
        for arch, extra in (("qwen2", []), ("llama", ["--attention-bias", "--mlp-bias"])):
            base = os.path.join(tmp, arch)
            hf.run_cli(["make-checkpoint", "--out", base, "--arch", arch, "--dtype", "f32", "--seed", "5",
                        "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
                        "--vocab", "97", "--layers", "2"] + extra)
            bases[arch] = base

        for arch, base in bases.items():
            d, W = hf.load_model(base)
            ids = [3, 50, 7, 96, 0, 12]
            x_ids = hf.embed(ids, W, d)
            # memories: default targets, all targets, all targets with B = 0
            mem_dirs = {}
            for tag, extra in (("qv", []),
                               ("all", ["--targets", all_targets, "--trigger-targets", "q_proj,down_proj",
                                        "--trigger-r", "3", "--trigger-alpha", "5"]),
                               ("zero", ["--targets", all_targets, "--zero-lora-b"])):
                mem_dirs[tag] = os.path.join(tmp, f"{arch}-mem-{tag}")
                run_cli(["make-memory", "--model", base, "--out", mem_dirs[tag], "--seed", "9",
                         "--prompt-k", "3", "--inference-k", "2", "--fingerprint", "fp-" + arch] + extra)

            # round trip of the file format
            mem = load_memory(mem_dirs["all"], d)
            with open(os.path.join(mem_dirs["all"], MANIFEST_FILE)) as f:
                man = json.load(f)
            expected = random_memory_tensors(d, man, 9)
            raw = hf.load_safetensors(os.path.join(mem_dirs["all"], MEMORY_FILE))
            check(list(raw) == list(expected) and all(np.array_equal(raw[n], expected[n]) for n in expected),
                  f"{arch}: memory.safetensors round trip (names, order, F32 values)")
            check(man["format"] == FORMAT and man["format_version"] == 1 and man["base_fingerprint"] == "fp-" + arch
                  and man["hidden_size"] == d.hidden and man["num_layers"] == d.layers
                  and man["weaver"]["prompt_k"] == 3 and man["weaver"]["inference_k"] == 2
                  and man["weaver"]["lora"] == {"r": 4, "alpha": 8.0, "targets": list(TARGET_GROUP), "dropout": 0.1}
                  and man["trigger"]["lora"] == {"r": 3, "alpha": 5.0, "targets": ["q_proj", "down_proj"],
                                                 "dropout": 0.1}
                  and man["delimiters"] == [",", ".", "\n"] and man["max_inference_aug"] == 5,
                  f"{arch}: manifest contents")
            check("weaver.lora.layers.1.mlp.gate_proj.lora_A" in raw
                  and raw["weaver.lora.layers.1.mlp.down_proj.lora_A"].shape == (4, d.inter)
                  and raw["weaver.lora.layers.0.self_attn.k_proj.lora_B"].shape == (d.kv_heads * d.head_dim, 4)
                  and raw["trigger.lora.layers.0.mlp.down_proj.lora_B"].shape == (d.hidden, 3),
                  f"{arch}: lora tensor names and shapes (self_attn./mlp. prefixes)")

            # (a) B = 0: the LoRA'd forward equals hf_reference's forward, for weaver and trigger
            mem0 = load_memory(mem_dirs["zero"], d)
            base_logits, base_hidden = hf.forward(ids, W, d)
            for which in WHICH:
                lg, hd = lora_forward_embeds(x_ids, W, d, mem0, which)
                check(maxdiff(lg, base_logits) <= 1e-12 and maxdiff(hd, base_hidden) <= 1e-12,
                      f"{arch}: (a) {which} LoRA with B = 0 == hf_reference forward")
            cli = run_cli(["lora-forward", "--model", base, "--memory", mem_dirs["zero"], "--which", "weaver",
                           "--ids", ",".join(map(str, ids))])
            check(maxdiff(cli["hidden"], base_hidden[-1]) <= 1e-12 and maxdiff(cli["logits"], base_logits[-1]) <= 1e-12,
                  f"{arch}: (a) lora-forward CLI with B = 0 == hf_reference forward")

            # a random memory changes the outputs visibly; and equals the base with LoRA merged into W
            for which in WHICH:
                lg, hd = lora_forward_embeds(x_ids, W, d, mem, which)
                rel = maxdiff(hd, base_hidden) / float(np.max(np.abs(base_hidden)))
                check(rel > 0.05, f"{arch}: {which} LoRA visibly changes the hidden states (rel diff {rel:.2f})")
                mlg, mhd = hf.forward(ids, merged_weights(W, mem, which), d)
                check(maxdiff(lg, mlg) <= 1e-9 and maxdiff(hd, mhd) <= 1e-9,
                      f"{arch}: {which} LoRA forward == base forward with W + alpha/r B A merged")

            # (d) loop-by-loop LoRA linear == vectorised (through the hf hook), for every target kind
            hook = lora_hook(mem, "weaver")
            for t in TARGET_GROUP:
                module = f"model.layers.1.{TARGET_GROUP[t]}.{t}"
                fin, _ = target_features(d, t)
                x = rng.standard_normal((3, fin))
                key = lora_prefix("weaver", 1, t)
                bias = W.get(module + ".bias") if (TARGET_GROUP[t] == "mlp" or t == "o_proj" or d.qkv_bias) else None
                vec = hf.proj(x, W, module, hook, bias=bias is not None)
                loop = naive_lora_linear(x, W[module + ".weight"], bias, mem.T[key + ".lora_A"],
                                         mem.T[key + ".lora_B"], 8.0, 4)
                check(maxdiff(vec, loop) <= 1e-10, f"{arch}: (d) loop LoRA linear == vectorised ({t})")

            # (b) weave shapes, and the weave pipeline against an independent composition
            rows = rng.standard_normal((5, d.hidden))
            for kind, K in (("prompt", 3), ("inference", 2)):
                lat, dbg = weave(rows, W, d, mem, kind)
                check(lat.shape == (K, d.hidden), f"{arch}: (b) weave {kind} -> [{K}, {d.hidden}]")
                # independent: naive LayerNorm, hf.forward over raw rows with merged weights
                Tm = mem.T
                x = [list(Tm["weaver.reasoner_to_weaver.weight"] @ r + Tm["weaver.reasoner_to_weaver.bias"])
                     for r in rows]
                for qrow in Tm[f"weaver.{kind}_queries"]:
                    x.append(list(naive_layer_norm(qrow, Tm[f"weaver.{kind}_query_norm.weight"],
                                                   Tm[f"weaver.{kind}_query_norm.bias"])
                                  * Tm[f"weaver.{kind}_query_scale"][0]))
                _, hd = hf.forward(x, merged_weights(W, mem, "weaver"), d)
                ref = hd[-K:] @ Tm["weaver.weaver_to_reasoner.weight"].T + Tm["weaver.weaver_to_reasoner.bias"]
                check(maxdiff(lat, ref) <= 1e-9, f"{arch}: weave {kind} == independent composition "
                                                 f"(naive LayerNorm, merged LoRA, hf forward)")

            # (c) causality: latents depend on every prefix row; the prefix positions ignore the queries
            lat, dbg = weave(rows, W, d, mem, "inference")
            for i in range(rows.shape[0]):
                r2 = rows.copy()
                r2[i] += 0.05 * rng.standard_normal(d.hidden)
                check(maxdiff(weave(r2, W, d, mem, "inference")[0], lat) > 1e-6,
                      f"{arch}: (c) perturbing prefix row {i} changes the latents")
            _, pre = lora_forward_embeds(dbg["weaver_inputs"][:5], W, d, mem, "weaver")
            check(maxdiff(pre, dbg["all_hidden"][:5]) <= 1e-12,
                  f"{arch}: (c) weaver hidden at prefix positions does not depend on the queries")
            lat1, _ = weave(rows[:1], W, d, mem, "prompt")
            check(lat1.shape == (3, d.hidden), f"{arch}: weave with a one-row prefix")

            # weave CLI: plain rows, and {"ids", "rows"} == rows of the embedded ids
            p1, p2 = os.path.join(tmp, "rows1.json"), os.path.join(tmp, "rows2.json")
            with open(p1, "w") as f:
                json.dump([W["model.embed_tokens.weight"][i].tolist() for i in ids[:2]] + rows[:2].tolist(), f)
            with open(p2, "w") as f:
                json.dump({"ids": ids[:2], "rows": rows[:2].tolist()}, f)
            o1 = run_cli(["weave", "--model", base, "--memory", mem_dirs["qv"], "--rows", p1, "--kind", "prompt"])
            o2 = run_cli(["weave", "--model", base, "--memory", mem_dirs["qv"], "--rows", p2, "--kind", "prompt"])
            check(np.array(o1["latents"]).shape == (3, d.hidden) and maxdiff(o1["latents"], o2["latents"]) <= 1e-12,
                  f"{arch}: weave CLI rows == {{ids, rows}} form")
            with open(p2, "w") as f:
                json.dump({"ids": ids[:3]}, f)
            o3 = run_cli(["weave", "--model", base, "--memory", mem_dirs["qv"], "--rows", p2, "--kind", "inference"])
            check(np.array(o3["latents"]).shape == (2, d.hidden), f"{arch}: weave CLI ids only")

            # (e) trigger: p in (0, 1), == softmax(head logits), head on the lora-forward hidden
            for tag in ("qv", "all"):
                out = run_cli(["trigger", "--model", base, "--memory", mem_dirs[tag], "--ids", ",".join(map(str, ids))])
                lg = np.array(out["logits"])
                p_soft = math.exp(lg[1]) / (math.exp(lg[0]) + math.exp(lg[1]))
                check(0.0 < out["p_invoke"] < 1.0 and abs(out["p_invoke"] - p_soft) <= 1e-12,
                      f"{arch}: (e) trigger p_invoke {out['p_invoke']:.4f} in (0,1) == softmax(logits)[1] ({tag})")
                lf = run_cli(["lora-forward", "--model", base, "--memory", mem_dirs[tag], "--which", "trigger",
                              "--ids", ",".join(map(str, ids))])
                m = load_memory(mem_dirs[tag], d)
                head = m.T["trigger.head.weight"] @ np.array(lf["hidden"]) + m.T["trigger.head.bias"]
                check(maxdiff(head, lg) <= 1e-12, f"{arch}: (e) trigger logits == head(lora-forward hidden) ({tag})")
            pa = trigger(ids, W, d, load_memory(mem_dirs["qv"], d))[0]
            pb = trigger(ids[:-1], W, d, load_memory(mem_dirs["qv"], d))[0]
            check(pa != pb, f"{arch}: trigger depends on the last position")

        # error handling (exit status 2 with a message)
        base = bases["qwen2"]
        d, W = hf.load_model(base)
        good = os.path.join(tmp, "qwen2-mem-qv")
        def expect_error(argv, what, needle):
            try:
                run_cli(argv)
            except ReferenceError as e:
                check(needle in str(e), f"error reported: {what} ({e})")
                return
            check(False, f"error reported: {what}")
        bad_rows = os.path.join(tmp, "bad_rows.json")
        with open(bad_rows, "w") as f:
            json.dump([[0.0] * (d.hidden - 1)], f)
        expect_error(["weave", "--model", base, "--memory", good, "--rows", bad_rows, "--kind", "prompt"],
                     "wrong row width", "expected hidden_size")
        with open(bad_rows, "w") as f:
            json.dump({"ids": [], "rows": []}, f)
        expect_error(["weave", "--model", base, "--memory", good, "--rows", bad_rows, "--kind", "prompt"],
                     "empty prefix", "empty")
        expect_error(["trigger", "--model", base, "--memory", good, "--ids", "97"], "token id out of range", "out of range")
        for key, value, needle in (("hidden_size", 64, "hidden_size"), ("num_layers", 3, "num_layers"),
                                   ("format", "other", "format")):
            mdir = os.path.join(tmp, f"bad-{key}")
            run_cli(["make-memory", "--model", base, "--out", mdir])
            mpath = os.path.join(mdir, MANIFEST_FILE)
            with open(mpath) as f:
                m = json.load(f)
            m[key] = value
            with open(mpath, "w") as f:
                json.dump(m, f)
            expect_error(["trigger", "--model", base, "--memory", mdir, "--ids", "1"], f"manifest {key} mismatch", needle)
        mdir = os.path.join(tmp, "bad-missing")
        run_cli(["make-memory", "--model", base, "--out", mdir])
        tpath = os.path.join(mdir, MEMORY_FILE)
        t = hf.load_safetensors(tpath)
        del t["weaver.lora.layers.1.self_attn.v_proj.lora_B"]
        hf.write_safetensors(tpath, t, "F32")
        expect_error(["trigger", "--model", base, "--memory", mdir, "--ids", "1"], "missing tensor", "missing tensors")
        # a memory made for another base is refused: hidden size, then layer count
        for flag, value, needle in (("--hidden", "64", "hidden_size"), ("--layers", "3", "num_layers")):
            other = os.path.join(tmp, f"other{flag}")
            hf.run_cli(["make-checkpoint", "--out", other, "--arch", "qwen2", "--dtype", "f32", "--hidden", "32",
                        "--heads", "4", "--kv-heads", "2", "--intermediate", "48", "--vocab", "97", "--layers", "2",
                        flag, value])
            expect_error(["weave", "--model", other, "--memory", good, "--rows", p2, "--kind", "prompt"],
                         f"memory for another base ({flag} {value})", needle)
        # the real process: exit status 2 and the message on stderr
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "weave", "--model", base, "--memory", good,
                               "--rows", os.path.join(tmp, "bad_rows.json"), "--kind", "prompt"],
                              capture_output=True, text=True)
        check(proc.returncode == 2 and proc.stderr.startswith("error:") and not proc.stdout,
              f"exit status 2 and stderr message ({proc.stderr.strip()})")
    print(f"selftest: {n_checks[0]} checks passed", file=sys.stderr)


# ----------------------------------------------------------------------------

def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    mk = sub.add_parser("make-memory", help="write a random memory checkpoint")
    mk.add_argument("--model", required=True, help="base model directory (HF layout)")
    mk.add_argument("--out", required=True, help="memory directory to write")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--prompt-k", type=int, default=8)
    mk.add_argument("--inference-k", type=int, default=8)
    mk.add_argument("--r", type=int, default=4, help="weaver LoRA rank")
    mk.add_argument("--alpha", type=float, default=8.0, help="weaver LoRA alpha")
    mk.add_argument("--targets", default="q_proj,v_proj", help="weaver LoRA target modules")
    mk.add_argument("--trigger-r", type=int, default=None, help="trigger LoRA rank (default: --r)")
    mk.add_argument("--trigger-alpha", type=float, default=None, help="trigger LoRA alpha (default: --alpha)")
    mk.add_argument("--trigger-targets", default=None, help="trigger LoRA targets (default: --targets)")
    mk.add_argument("--fingerprint", default="", help="copied into manifest base_fingerprint")
    mk.add_argument("--zero-lora-b", action="store_true",
                    help="every lora_B = 0 (as a fresh init); the other tensors are the same as without it")
    mk.set_defaults(func=cmd_make_memory)

    wv = sub.add_parser("weave", help="latents for a prefix; prints {\"latents\": [[h] x K]}")
    wv.add_argument("--model", required=True)
    wv.add_argument("--memory", required=True)
    wv.add_argument("--rows", required=True,
                    help='JSON list of rows, or {"ids": [...], "rows": [[...]]} (ids embedded, then rows)')
    wv.add_argument("--kind", required=True, choices=KINDS)
    wv.add_argument("--all", action="store_true",
                    help="also print weaver_inputs [T+K, h] and query_hidden [K, h] (before weaver_to_reasoner)")
    wv.set_defaults(func=cmd_weave)

    tg = sub.add_parser("trigger", help='prints {"p_invoke": p, "logits": [2]}')
    tg.add_argument("--model", required=True)
    tg.add_argument("--memory", required=True)
    tg.add_argument("--ids", required=True, help="comma-separated token ids")
    tg.set_defaults(func=cmd_trigger)

    lf = sub.add_parser("lora-forward", help='the LoRA\'d base; prints {"hidden": [h], "logits": [vocab]}')
    lf.add_argument("--model", required=True)
    lf.add_argument("--memory", required=True)
    lf.add_argument("--which", required=True, choices=WHICH)
    lf.add_argument("--ids", required=True, help="comma-separated token ids")
    lf.add_argument("--all", action="store_true", help="also print all_hidden / all_logits")
    lf.set_defaults(func=cmd_lora_forward)

    st = sub.add_parser("selftest", help="run the built-in consistency checks")
    st.set_defaults(func=cmd_selftest)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    try:
        main()
    except ReferenceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
