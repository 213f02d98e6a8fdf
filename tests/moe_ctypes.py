"""moe_ctypes.py: ctypes bindings of the public C API of libmoe (include/moe.h).

Shared by the PyTorch reference tests (tests/test_*.py). The structures mirror
include/moe.h field by field, in order, with the C types (enums are C ints,
int64_t fields are c_int64), so ctypes lays them out and pads them like C.

    import moe_ctypes as mc
    lib = mc.load()                      # $MOE_LIB or build/libmoe.so
    L = mc.Layer(lib, cfg)               # raises mc.MoeError on failure
    L.set_params(router=..., gate=..., up=..., down=...)   # numpy float32
    y = L.forward(x)                     # numpy [T, d] float32
    dx = L.backward(dy)
    g = L.grads()                        # dict of numpy copies

The routing-family parameters (noise, shared_*) appear in params() / grads()
only when the layer has them (non-NULL pointers), so code written for the basic
layer sees the same four keys as before. The routing-family functions
(moe_layer_set_top_k, moe_layer_get_draws, ...) are bound when the library
has them; `has(lib, name)` tells.

numpy is imported only by the helpers that need it.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float,
                    c_int, c_int32, c_int64, c_size_t, c_uint64, c_void_p)

# ----------------------------------------------------------------- enums
MOE_OK = 0
MOE_ERR_ARG = 1
MOE_ERR_SHAPE = 2
MOE_ERR_NONFINITE = 3
MOE_ERR_NOMEM = 4
MOE_ERR_IO = 5
MOE_ERR_FORMAT = 6
MOE_ERR_UNSUPPORTED = 7

MOE_EXPERT_SWIGLU = 0
MOE_EXPERT_GELU = 1
MOE_GATE_SOFTMAX = 0
MOE_GATE_SIGMOID = 1
MOE_GATE_RELU = 2
MOE_SELECT_TOPK = 0
MOE_SELECT_TOPP = 1
MOE_SELECT_EXPERT_CHOICE = 2
MOE_SELECT_HASH = 3
MOE_SELECT_ALL = 4
MOE_DROP_POSITION = 0
MOE_DROP_SCORE = 1
MOE_DROPLESS = -1.0


# ------------------------------------------------------------ structures
class MoeError(Structure):
    _fields_ = [("msg", c_char * 512)]


class LayerConfig(Structure):
    _fields_ = [
        ("d_model", c_int),
        ("d_ff", c_int),
        ("n_experts", c_int),
        ("top_k", c_int),
        ("expert", c_int),          # moe_expert_type
        ("gate", c_int),            # moe_gate
        ("select", c_int),          # moe_select
        ("capacity_factor", c_float),
        ("drop_policy", c_int),     # moe_drop_policy
        ("renormalize", c_int),
        ("weight_scale", c_float),
        ("aux_loss_coef", c_float),
        ("z_loss_coef", c_float),
        ("max_tokens", c_int),
        ("n_threads", c_int),
        # the routing family (docs/ROUTING.md); ctypes pads before the
        # uint64_t like C does (seed at offset 64, sizeof 160 on x86-64)
        ("seed", c_uint64),
        ("max_top_k", c_int),
        ("jitter", c_float),
        ("noisy_gate", c_int),
        ("importance_loss_coef", c_float),
        ("load_loss_coef", c_float),
        ("gshard_random_second", c_int),
        ("balance_top1_only", c_int),
        ("top_p", c_float),
        ("entropy_loss_coef", c_float),
        ("ec_capacity", c_float),
        ("ec_inference", c_int),
        ("n_groups", c_int),
        ("topk_groups", c_int),
        ("bias_update_rate", c_float),
        ("seq_aux_loss_coef", c_float),
        ("seq_len", c_int),
        ("shared_d_ff", c_int),
        ("shared_gate", c_int),
        ("relu_l1_coef", c_float),
        ("relu_target_sparsity", c_float),
        ("global_stats", c_int),
        ("dead_window", c_int),
    ]


class LayerWeights(Structure):
    _fields_ = [
        ("router", POINTER(c_float)),
        ("gate", POINTER(c_float)),
        ("up", POINTER(c_float)),
        ("down", POINTER(c_float)),
        ("noise", POINTER(c_float)),
        ("shared_gate", POINTER(c_float)),
        ("shared_up", POINTER(c_float)),
        ("shared_down", POINTER(c_float)),
        ("shared_router", POINTER(c_float)),
    ]


# The parameters of the basic layer: always keys of params() / grads().
BASE_PARAMS = ("router", "gate", "up", "down")
# The routing family's optional parameters: keys only when non-NULL.
EXTRA_PARAMS = ("noise", "shared_gate", "shared_up", "shared_down", "shared_router")


class RouteStats(Structure):
    _fields_ = [
        ("n_tokens", c_int),
        ("capacity", c_int),
        ("aux_loss", c_float),
        ("z_loss", c_float),
        ("balance", c_float),
        ("lse_sq", c_float),
        ("entropy", c_float),
        ("assignments", c_int64),
        ("dropped", c_int64),
        ("tokens_per_expert", POINTER(c_int)),
        ("kept_per_expert", POINTER(c_int)),
        # balance and sparsity
        ("max_violation", c_float),
        ("load_cv", c_float),
        ("dead_experts", c_int),
        ("starved_experts", c_int),
        ("dropped_fraction", c_float),
        ("active_mean", c_float),
        ("active_hist", POINTER(c_int)),
        ("active_hist_len", c_int),
        # the other router losses (each already times its coefficient)
        ("importance_loss", c_float),
        ("load_loss", c_float),
        ("entropy_loss", c_float),
        ("seq_aux_loss", c_float),
        ("l1_loss", c_float),
        ("l1_coef", c_float),
        ("sparsity", c_float),
        ("router_loss", c_float),
    ]


# The fields of RouteStats that are arrays (copied by Layer.stats).
STATS_ARRAYS = ("tokens_per_expert", "kept_per_expert", "active_hist")


class LayerDraws(Structure):
    _fields_ = [
        ("jitter", POINTER(c_float)),   # [T, d]
        ("noise", POINTER(c_float)),    # [T, E]
        ("second", POINTER(c_float)),   # [T]
    ]


class LayerProfile(Structure):
    _fields_ = [(n, c_double) for n in (
        "fwd_route", "fwd_plan", "fwd_gather", "fwd_gemm", "fwd_act", "fwd_combine",
        "bwd_slots", "bwd_gemm", "bwd_act", "bwd_scatter", "bwd_route")]


FP = POINTER(c_float)
IP = POINTER(c_int)
I32P = POINTER(c_int32)

# ----------------------------------------------- model and optimizer
class ModelConfig(Structure):
    """moe_model_config; the embedded moe_layer_config starts at offset 56
    (ctypes pads it to its uint64_t alignment like C); sizeof 224 on x86-64."""
    _fields_ = [
        ("vocab_size", c_int),
        ("d_model", c_int),
        ("n_layers", c_int),
        ("n_heads", c_int),
        ("n_kv_heads", c_int),
        ("head_dim", c_int),
        ("ctx_len", c_int),
        ("d_ff", c_int),
        ("rope_theta", c_float),
        ("norm_eps", c_float),
        ("tie_embeddings", c_int),
        ("moe_every", c_int),
        ("n_dense_first", c_int),
        ("moe", LayerConfig),
        ("max_batch", c_int),
        ("n_threads", c_int),
    ]


class ModelCounts(Structure):
    _fields_ = [
        ("params", c_int64),
        ("active_params", c_int64),
        ("expert_params", c_int64),
        ("fwd_flops", c_double),
        ("train_flops", c_double),
    ]


class Tensor(Structure):
    """moe_tensor: name at 0, n_dims at 64, shape at 72, n at 96, data at 104,
    grad at 112, decay at 120, held_lo at 128, held_n at 136; sizeof 144 on
    x86-64. A model of one process holds every element (held_n == n)."""
    _fields_ = [
        ("name", c_char * 64),
        ("n_dims", c_int),
        ("shape", c_int64 * 3),
        ("n", c_int64),
        ("data", POINTER(c_float)),
        ("grad", POINTER(c_float)),
        ("decay", c_int),
        ("held_lo", c_int64),
        ("held_n", c_int64),
    ]


class ModelLosses(Structure):
    _fields_ = [
        ("ce", c_float),
        ("aux", c_float),
        ("z", c_float),
        ("router", c_float),
        ("n_targets", c_int),
    ]


class AdamWConfig(Structure):
    _fields_ = [
        ("beta1", c_float),
        ("beta2", c_float),
        ("eps", c_float),
        ("weight_decay", c_float),
        ("grad_clip", c_float),
    ]


class InferOptions(Structure):  # include/moe_infer.h
    _fields_ = [("n_threads", c_int), ("ctx_len", c_int), ("experts_per_token", c_int),
                ("max_batch", c_int), ("n_seq", c_int)]


class InferInfo(Structure):  # include/moe_infer.h
    _fields_ = [("arch", c_char * 32), ("name", c_char * 128),
                ("n_layers", c_int), ("d_model", c_int), ("n_heads", c_int), ("n_kv_heads", c_int),
                ("head_dim", c_int), ("vocab_size", c_int), ("ctx_len", c_int),
                ("n_experts", c_int), ("top_k", c_int), ("n_dense_layers", c_int),
                ("params_total", c_int64), ("params_active", c_int64),
                ("bytes_total", c_int64), ("bytes_active", c_int64)]


# Layouts that the C compiler gives on x86-64 / aarch64 (LP64): checked by
# check_layouts() so that a field added to moe.h without its mirror here is
# caught instead of silently shifting every later field.
LAYOUTS = {
    LayerConfig: (160, {"seed": 64, "dead_window": 156}),
    ModelConfig: (224, {"n_dense_first": 48, "moe": 56, "max_batch": 216, "n_threads": 220}),
    ModelCounts: (40, {"fwd_flops": 24}),
    Tensor: (144, {"n_dims": 64, "shape": 72, "n": 96, "data": 104, "grad": 112, "decay": 120, "held_lo": 128,
                   "held_n": 136}),
    ModelLosses: (20, {"n_targets": 16}),
    AdamWConfig: (20, {"grad_clip": 16}),
    InferOptions: (20, {"max_batch": 12, "n_seq": 16}),
}


def check_layouts():
    """[] when every structure above has the LP64 size and offsets of
    LAYOUTS; otherwise one line per difference."""
    bad = []
    for cls, (size, offs) in LAYOUTS.items():
        if ctypes.sizeof(cls) != size:
            bad.append("%s: sizeof %d, expected %d" % (cls.__name__, ctypes.sizeof(cls), size))
        for f, off in offs.items():
            got = getattr(cls, f).offset
            if got != off:
                bad.append("%s.%s: offset %d, expected %d" % (cls.__name__, f, got, off))
    return bad


class MoeCallError(RuntimeError):
    def __init__(self, status, msg):
        RuntimeError.__init__(self, "status %d: %s" % (status, msg))
        self.status = status
        self.msg = msg


def default_lib_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MOE_LIB") or os.path.join(here, "..", "build", "libmoe.so")


def load(path=None):
    """Loads libmoe.so and declares the prototypes of the public API.
    The moe_layer_* functions are required (AttributeError if missing); the
    others are declared when present."""
    lib = ctypes.CDLL(path or default_lib_path())

    def proto(name, restype, *argtypes, **kw):
        try:
            f = getattr(lib, name)
        except AttributeError:
            if kw.get("optional"):
                return
            raise
        f.restype = restype
        f.argtypes = list(argtypes)

    # Not the layer: optional here so a layer test runs while they are missing.
    proto("moe_status_str", c_char_p, c_int, optional=True)
    proto("moe_sgemm", c_int, c_int, c_int, c_int, c_int, c_int, c_int,
          c_float, FP, c_int, FP, c_int, c_float, FP, c_int, POINTER(MoeError), optional=True)
    proto("moe_sgemm_kernel_name", c_char_p, optional=True)
    proto("moe_layer_config_default", None, POINTER(LayerConfig), c_int, c_int, c_int, c_int)
    proto("moe_layer_config_check", c_int, POINTER(LayerConfig), POINTER(MoeError))
    proto("moe_layer_create", c_int, POINTER(c_void_p), POINTER(LayerConfig), POINTER(MoeError))
    proto("moe_layer_free", None, c_void_p)
    proto("moe_layer_get_config", POINTER(LayerConfig), c_void_p)
    proto("moe_layer_params", LayerWeights, c_void_p)
    proto("moe_layer_grads", LayerWeights, c_void_p)
    proto("moe_layer_param_count", c_size_t, c_void_p)
    proto("moe_layer_init_params", None, c_void_p, c_uint64)
    proto("moe_layer_zero_grads", None, c_void_p)
    proto("moe_layer_set_threads", None, c_void_p, c_int)
    proto("moe_layer_forward", c_int, c_void_p, FP, FP, c_int, c_int, POINTER(MoeError))
    proto("moe_layer_backward", c_int, c_void_p, FP, FP, POINTER(MoeError))
    proto("moe_layer_stats", POINTER(RouteStats), c_void_p)
    proto("moe_layer_routing", None, c_void_p, IP, FP, IP)
    # The routing family: optional so that an older library still loads.
    proto("moe_layer_set_token_ids", c_int, c_void_p, I32P, c_int, POINTER(MoeError), optional=True)
    proto("moe_layer_set_top_k", c_int, c_void_p, c_int, POINTER(MoeError), optional=True)
    proto("moe_layer_set_top_p", c_int, c_void_p, c_float, POINTER(MoeError), optional=True)
    proto("moe_layer_update_balance", None, c_void_p, optional=True)
    proto("moe_layer_balance_bias", FP, c_void_p, optional=True)
    proto("moe_layer_reset_stats", None, c_void_p, optional=True)
    proto("moe_layer_get_draws", LayerDraws, c_void_p, optional=True)
    proto("moe_layer_get_profile", POINTER(LayerProfile), c_void_p, optional=True)
    proto("moe_layer_slots", c_int, c_void_p, optional=True)
    # The model and the optimizer: optional so that a layer-only library loads.
    proto("moe_model_config_default", None, POINTER(ModelConfig), optional=True)
    proto("moe_model_config_check", c_int, POINTER(ModelConfig), POINTER(MoeError), optional=True)
    proto("moe_model_layer_is_moe", c_int, POINTER(ModelConfig), c_int, optional=True)
    proto("moe_model_memory_bytes", c_size_t, POINTER(ModelConfig), optional=True)
    proto("moe_model_count", None, POINTER(ModelConfig), POINTER(ModelCounts), optional=True)
    proto("moe_model_create", c_int, POINTER(c_void_p), POINTER(ModelConfig), POINTER(MoeError),
          optional=True)
    proto("moe_model_free", None, c_void_p, optional=True)
    proto("moe_model_get_config", POINTER(ModelConfig), c_void_p, optional=True)
    proto("moe_model_set_threads", None, c_void_p, c_int, optional=True)
    proto("moe_model_init_params", None, c_void_p, c_uint64, optional=True)
    proto("moe_model_n_tensors", c_int, c_void_p, optional=True)
    proto("moe_model_tensor", c_int, c_void_p, c_int, POINTER(Tensor), POINTER(MoeError), optional=True)
    proto("moe_model_find_tensor", c_int, c_void_p, c_char_p, optional=True)
    proto("moe_model_forward", c_int, c_void_p, I32P, I32P, c_int, c_int, c_int, FP,
          POINTER(MoeError), optional=True)
    proto("moe_model_logits", FP, c_void_p, optional=True)
    proto("moe_model_get_losses", ModelLosses, c_void_p, optional=True)
    proto("moe_model_backward", c_int, c_void_p, POINTER(MoeError), optional=True)
    proto("moe_model_zero_grads", None, c_void_p, optional=True)
    proto("moe_model_moe_layer", c_void_p, c_void_p, c_int, optional=True)
    proto("moe_adamw_config_default", None, POINTER(AdamWConfig), optional=True)
    proto("moe_adamw_create", c_int, POINTER(c_void_p), c_void_p, POINTER(AdamWConfig),
          POINTER(MoeError), optional=True)
    proto("moe_adamw_free", None, c_void_p, optional=True)
    proto("moe_adamw_step", c_int, c_void_p, c_float, FP, POINTER(MoeError), optional=True)
    proto("moe_adamw_steps", c_int64, c_void_p, optional=True)
    proto("moe_adamw_set_steps", None, c_void_p, c_int64, optional=True)
    proto("moe_adamw_moment", FP, c_void_p, c_int, c_int, optional=True)
    proto("moe_lr_schedule", c_float, c_int64, c_int64, c_int64, c_float, c_float,
          optional=True)
    return lib


def load_for_test(test_name, needed=()):
    """The library for a test, or None after printing why as a FAIL line:
    MOE_LIB missing, not loadable, or without one of the `needed` symbols."""
    path = default_lib_path()
    if not os.path.exists(path):
        print("FAIL %s: MOE_LIB %s does not exist" % (test_name, path))
        return None
    try:
        lib = load(path)
    except (OSError, AttributeError) as e:
        print("FAIL %s: cannot load %s: %s" % (test_name, path, e))
        return None
    missing = [n for n in needed if not has(lib, n)]
    if missing:
        print("FAIL %s: %s lacks %s" % (test_name, path, ", ".join(missing)))
        return None
    return lib


def testhooks_path():
    """build/libmoe_testhooks.so, next to MOE_LIB: the internal functions the
    tests call (tests/testhooks.c), which libmoe.so does not export."""
    return os.environ.get("MOE_TESTHOOKS") or os.path.join(
        os.path.dirname(default_lib_path()), "libmoe_testhooks.so")


def bind_internal(lib, *names):
    """Makes lib.NAME the internal function NAME (tests/testhooks.c exports it
    as moe_test_NAME) for each name; set restype/argtypes on them as usual."""
    hooks = ctypes.CDLL(testhooks_path())
    for name in names:
        setattr(lib, name, getattr(hooks, "moe_test_" + name))


def has(lib, name):
    """True when the loaded library exports `name`."""
    try:
        getattr(lib, name)
        return True
    except AttributeError:
        return False


def routing_family(lib):
    """True when the library has the routing-family API (the new structures)."""
    return has(lib, "moe_layer_slots")


def config_default(lib, d, d_ff, E, k, **fields):
    """moe_layer_config_default, then the given fields set."""
    c = LayerConfig()
    lib.moe_layer_config_default(ctypes.byref(c), d, d_ff, E, k)
    for name, v in fields.items():
        setattr(c, name, v)
    return c


def config_to_dict(c):
    return {name: getattr(c, name) for name, _ in LayerConfig._fields_}


def fptr(a):
    return a.ctypes.data_as(FP)


def iptr(a):
    return a.ctypes.data_as(IP)


class _Handle(object):
    """What Layer and Model share: an owned C handle `h`, freed by the
    library function named FREE (also on leaving a `with` block), and the
    moe_error `err` every fallible call of the wrapper passes (errmsg():
    the message of the last failure)."""
    FREE = None

    def free(self):
        if self.h:
            getattr(self.lib, self.FREE)(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.free()

    def errmsg(self):
        return self.err.msg.decode(errors="replace")

    def eref(self):
        """ctypes.byref of this handle's moe_error, for a call's last argument."""
        return ctypes.byref(self.err)


class Layer(_Handle):
    """A moe_layer handle with numpy-facing helpers."""
    FREE = "moe_layer_free"

    def __init__(self, lib, cfg):
        self.lib = lib
        self.err = MoeError()
        self.cfg = cfg
        h = c_void_p()
        err = MoeError()
        st = lib.moe_layer_create(ctypes.byref(h), ctypes.byref(cfg), ctypes.byref(err))
        if st != MOE_OK:
            raise MoeCallError(st, err.msg.decode(errors="replace"))
        self.h = h
        self.d = cfg.d_model
        self.d_ff = cfg.d_ff
        self.E = cfg.n_experts
        self.k = cfg.top_k
        self.Fs = cfg.shared_d_ff
        self.T = 0

    def shapes(self):
        E, d, f, fs = self.E, self.d, self.d_ff, self.Fs
        return {"router": (E, d), "gate": (E, f, d), "up": (E, f, d), "down": (E, d, f),
                "noise": (E, d), "shared_gate": (fs, d), "shared_up": (fs, d),
                "shared_down": (d, fs), "shared_router": (d,)}

    def _views(self, w):
        """BASE_PARAMS always (None for NULL); EXTRA_PARAMS only when non-NULL
        (and never with an older library: it fills only the first four)."""
        import numpy as np
        out = {}
        extra = routing_family(self.lib)
        for name, shape in self.shapes().items():
            if name not in BASE_PARAMS and not extra:
                continue
            p = getattr(w, name)
            if name in BASE_PARAMS:
                out[name] = None if not p else np.ctypeslib.as_array(p, shape=shape)
            elif p:
                out[name] = np.ctypeslib.as_array(p, shape=shape)
        return out

    def params(self):
        """Live numpy views of the parameters (None for a NULL pointer)."""
        return self._views(self.lib.moe_layer_params(self.h))

    def grads(self):
        """Copies of the gradients (None for a NULL pointer)."""
        return {k: (None if v is None else v.copy())
                for k, v in self._views(self.lib.moe_layer_grads(self.h)).items()}

    def set_params(self, **arrays):
        import numpy as np
        w = self.lib.moe_layer_params(self.h)
        shapes = self.shapes()
        for name, a in arrays.items():
            if a is None:
                continue
            a = np.ascontiguousarray(a, dtype=np.float32)
            assert a.shape == shapes[name], (name, a.shape, shapes[name])
            p = getattr(w, name)
            if not p:
                raise ValueError("parameter %s is NULL in this layer" % name)
            ctypes.memmove(p, a.ctypes.data, a.nbytes)

    def param_count(self):
        return self.lib.moe_layer_param_count(self.h)

    def zero_grads(self):
        self.lib.moe_layer_zero_grads(self.h)

    def set_threads(self, n):
        self.lib.moe_layer_set_threads(self.h, n)

    def forward_raw(self, x, T, train=1, y=None):
        """Returns (status, y); y is pre-filled with NaN."""
        import numpy as np
        x = np.ascontiguousarray(x, dtype=np.float32)
        if y is None:
            y = np.full((max(T, 1), self.d), np.nan, dtype=np.float32)
        st = self.lib.moe_layer_forward(self.h, fptr(y), fptr(x), T, train, self.eref())
        return st, y

    def forward(self, x, train=1):
        T = x.shape[0]
        st, y = self.forward_raw(x, T, train)
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())
        self.T = T
        return y

    def backward(self, dy):
        import numpy as np
        dy = np.ascontiguousarray(dy, dtype=np.float32)
        dx = np.full(dy.shape, np.nan, dtype=np.float32)
        st = self.lib.moe_layer_backward(self.h, fptr(dx), fptr(dy), self.eref())
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())
        return dx

    def stats(self):
        """moe_layer_stats as a dict (arrays copied)."""
        import numpy as np
        s = self.lib.moe_layer_stats(self.h).contents
        out = {name: getattr(s, name) for name, _ in RouteStats._fields_
               if name not in STATS_ARRAYS}
        for name in ("tokens_per_expert", "kept_per_expert"):
            p = getattr(s, name)
            out[name] = None if not p else np.ctypeslib.as_array(p, shape=(self.E,)).copy()
        # active_hist exists only in a library with the routing family (in an
        # older one these bytes lie past the end of its structure)
        p = s.active_hist if routing_family(self.lib) else None
        n = s.active_hist_len
        out["active_hist"] = (None if not p or n <= 0 else
                              np.ctypeslib.as_array(p, shape=(n,)).copy())
        return out

    def slots(self):
        """moe_layer_slots (top_k in a library without it)."""
        if has(self.lib, "moe_layer_slots"):
            return int(self.lib.moe_layer_slots(self.h))
        return self.k

    def set_token_ids(self, ids):
        import numpy as np
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        st = self.lib.moe_layer_set_token_ids(self.h, ids.ctypes.data_as(I32P), ids.shape[0], self.eref())
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())

    def set_top_k(self, k):
        """Returns the status (no exception: failures are tested)."""
        return self.lib.moe_layer_set_top_k(self.h, k, self.eref())

    def set_top_p(self, p):
        return self.lib.moe_layer_set_top_p(self.h, p, self.eref())

    def update_balance(self):
        self.lib.moe_layer_update_balance(self.h)

    def reset_stats(self):
        self.lib.moe_layer_reset_stats(self.h)

    def balance_bias(self):
        """A live numpy view of the selection bias [E] (None for NULL)."""
        import numpy as np
        p = self.lib.moe_layer_balance_bias(self.h)
        return None if not p else np.ctypeslib.as_array(p, shape=(self.E,))

    def draws(self, T=None):
        """Copies of the draws of the last training forward over T tokens:
        dict jitter [T, d], noise [T, E], second [T] (None when NULL)."""
        import numpy as np
        T = self.T if T is None else T
        dr = self.lib.moe_layer_get_draws(self.h)
        shapes = {"jitter": (T, self.d), "noise": (T, self.E), "second": (T,)}
        out = {}
        for name, shape in shapes.items():
            p = getattr(dr, name)
            out[name] = None if not p else np.ctypeslib.as_array(p, shape=shape).copy()
        return out

    def routing(self):
        """(experts int32 [T,S], weights float32 [T,S], kept int32 [T,S]) with
        S = moe_layer_slots (top_k in a library without it)."""
        import numpy as np
        T, k = self.T, self.slots()
        ex = np.full((T, k), -7, dtype=np.int32)
        w = np.full((T, k), np.nan, dtype=np.float32)
        kept = np.full((T, k), -7, dtype=np.int32)
        self.lib.moe_layer_routing(self.h, iptr(ex), fptr(w), iptr(kept))
        return ex, w, kept


class Model(_Handle):
    """A moe_model handle with numpy-facing helpers (the tensor table as
    live views, forward / backward raising MoeCallError on failure)."""
    FREE = "moe_model_free"

    def __init__(self, lib, cfg):
        self.lib = lib
        self.err = MoeError()
        self.cfg = cfg
        h = c_void_p()
        err = MoeError()
        st = lib.moe_model_create(ctypes.byref(h), ctypes.byref(cfg), ctypes.byref(err))
        if st != MOE_OK:
            raise MoeCallError(st, err.msg.decode(errors="replace"))
        self.h = h
        self.B = self.T = 0

    def tensors(self):
        """[{name, shape, n, decay, data, grad}] in table order; data and grad
        are live numpy views of the model's buffers."""
        import numpy as np
        out = []
        for i in range(self.lib.moe_model_n_tensors(self.h)):
            t = Tensor()
            st = self.lib.moe_model_tensor(self.h, i, ctypes.byref(t), self.eref())
            if st != MOE_OK:
                raise MoeCallError(st, self.errmsg())
            shape = tuple(int(t.shape[j]) for j in range(t.n_dims))
            out.append({"name": t.name.decode(), "shape": shape, "n": int(t.n),
                        "decay": int(t.decay),
                        "data": np.ctypeslib.as_array(t.data, shape=shape),
                        "grad": np.ctypeslib.as_array(t.grad, shape=shape)})
        return out

    def init_params(self, seed):
        self.lib.moe_model_init_params(self.h, seed)

    def set_threads(self, n):
        self.lib.moe_model_set_threads(self.h, n)

    def forward(self, tokens, targets=None, train=1):
        """tokens, targets: int arrays [B, T]. Returns the mean cross-entropy
        (0.0 without targets)."""
        import numpy as np
        tok = np.ascontiguousarray(tokens, dtype=np.int32)
        B, T = tok.shape
        tg = None if targets is None else np.ascontiguousarray(targets, dtype=np.int32)
        loss = c_float(np.nan)
        st = self.lib.moe_model_forward(self.h, tok.ctypes.data_as(I32P),
                                        None if tg is None else tg.ctypes.data_as(I32P),
                                        B, T, train, ctypes.byref(loss), self.eref())
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())
        self.B, self.T = B, T
        return loss.value

    def logits(self):
        """A copy of the logits [B*T, V] of the last forward."""
        import numpy as np
        p = self.lib.moe_model_logits(self.h)
        return np.ctypeslib.as_array(p, shape=(self.B * self.T, self.cfg.vocab_size)).copy()

    def losses(self):
        s = self.lib.moe_model_get_losses(self.h)
        return {name: getattr(s, name) for name, _ in ModelLosses._fields_}

    def backward(self):
        st = self.lib.moe_model_backward(self.h, self.eref())
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())

    def zero_grads(self):
        self.lib.moe_model_zero_grads(self.h)

    def routing(self, l):
        """(experts, weights, kept) [B*T, slots] of MoE block l's last
        forward, or None for a dense block."""
        import numpy as np
        L = self.lib.moe_model_moe_layer(self.h, l)
        if not L:
            return None
        S = int(self.lib.moe_layer_slots(L)) if has(self.lib, "moe_layer_slots") else self.cfg.moe.top_k
        N = self.B * self.T
        ex = np.full((N, S), -7, dtype=np.int32)
        w = np.full((N, S), np.nan, dtype=np.float32)
        kept = np.full((N, S), -7, dtype=np.int32)
        self.lib.moe_layer_routing(L, iptr(ex), fptr(w), iptr(kept))
        return ex, w, kept
