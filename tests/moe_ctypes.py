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

numpy is imported only by the helpers that need it.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_float, c_int,
                    c_int64, c_size_t, c_uint64, c_void_p)

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
MOE_SELECT_TOPK = 0
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
    ]


class LayerWeights(Structure):
    _fields_ = [
        ("router", POINTER(c_float)),
        ("gate", POINTER(c_float)),
        ("up", POINTER(c_float)),
        ("down", POINTER(c_float)),
    ]


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
    ]


FP = POINTER(c_float)
IP = POINTER(c_int)


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
    proto("moe_sgemm", None, c_int, c_int, c_int, c_int, c_int, c_int,
          c_float, FP, c_int, FP, c_int, c_float, FP, c_int, optional=True)
    proto("moe_sgemm_kernel_name", c_char_p, optional=True)
    proto("moe_layer_config_default", None, POINTER(LayerConfig), c_int, c_int, c_int, c_int)
    proto("moe_layer_config_check", c_int, POINTER(LayerConfig), POINTER(MoeError))
    proto("moe_layer_create", c_int, POINTER(c_void_p), POINTER(LayerConfig), POINTER(MoeError))
    proto("moe_layer_free", None, c_void_p)
    proto("moe_layer_get_config", POINTER(LayerConfig), c_void_p)
    proto("moe_layer_errmsg", c_char_p, c_void_p)
    proto("moe_layer_params", LayerWeights, c_void_p)
    proto("moe_layer_grads", LayerWeights, c_void_p)
    proto("moe_layer_param_count", c_size_t, c_void_p)
    proto("moe_layer_init_params", None, c_void_p, c_uint64)
    proto("moe_layer_zero_grads", None, c_void_p)
    proto("moe_layer_set_threads", None, c_void_p, c_int)
    proto("moe_layer_forward", c_int, c_void_p, FP, FP, c_int, c_int)
    proto("moe_layer_backward", c_int, c_void_p, FP, FP)
    proto("moe_layer_stats", POINTER(RouteStats), c_void_p)
    proto("moe_layer_routing", None, c_void_p, IP, FP, IP)
    return lib


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


class Layer(object):
    """A moe_layer handle with numpy-facing helpers."""

    def __init__(self, lib, cfg):
        self.lib = lib
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
        self.T = 0

    def free(self):
        if self.h:
            self.lib.moe_layer_free(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.free()

    def errmsg(self):
        m = self.lib.moe_layer_errmsg(self.h)
        return m.decode(errors="replace") if m is not None else None

    def shapes(self):
        E, d, f = self.E, self.d, self.d_ff
        return {"router": (E, d), "gate": (E, f, d), "up": (E, f, d), "down": (E, d, f)}

    def _views(self, w):
        import numpy as np
        out = {}
        for name, shape in self.shapes().items():
            p = getattr(w, name)
            out[name] = None if not p else np.ctypeslib.as_array(p, shape=shape)
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
        st = self.lib.moe_layer_forward(self.h, fptr(y), fptr(x), T, train)
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
        st = self.lib.moe_layer_backward(self.h, fptr(dx), fptr(dy))
        if st != MOE_OK:
            raise MoeCallError(st, self.errmsg())
        return dx

    def stats(self):
        """moe_layer_stats as a dict (arrays copied)."""
        import numpy as np
        s = self.lib.moe_layer_stats(self.h).contents
        out = {name: getattr(s, name) for name, _ in RouteStats._fields_
               if name not in ("tokens_per_expert", "kept_per_expert")}
        for name in ("tokens_per_expert", "kept_per_expert"):
            p = getattr(s, name)
            out[name] = None if not p else np.ctypeslib.as_array(p, shape=(self.E,)).copy()
        return out

    def routing(self):
        """(experts int32 [T,k], weights float32 [T,k], kept int32 [T,k])."""
        import numpy as np
        T, k = self.T, self.k
        ex = np.full((T, k), -7, dtype=np.int32)
        w = np.full((T, k), np.nan, dtype=np.float32)
        kept = np.full((T, k), -7, dtype=np.int32)
        self.lib.moe_layer_routing(self.h, iptr(ex), fptr(w), iptr(kept))
        return ex, w, kept
