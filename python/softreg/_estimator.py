"""SoftmaxRegression: softreg's softmax regression as a scikit-learn classifier.

The estimator checks and converts its input the way scikit-learn's own classifiers do, then hands the
rows to the C++ core in place: C-contiguous uint8 (pixels, seen as x/255 as in the CLI), float32 and
float64 rows are read where they lie (training rounds float64 values to float32 as it reads them, the
precision its kernels compute in; prediction uses them as they are); anything else is converted once
to float32.
The defaults are the seed's recipe: the same seed and data give the same weights, bit for bit, as
`softreg train`.
"""
import json
import math
import numbers
import warnings

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import _core

try:  # scikit-learn >= 1.6 has a public function; older ones (Debian 12's 1.2) a method.
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - depends on the installed scikit-learn

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


# Row types the core reads without a copy (the first is what anything else becomes).
_ROW_DTYPES = [np.float32, np.float64, np.uint8]

# Each parameter's type as the core needs it: (name, accepted Python types, description for messages).
_REAL = (numbers.Real,)
_INT = (numbers.Integral,)
_PARAM_TYPES = {
    "lr": _REAL,
    "epochs": _INT,
    "batch_size": _INT,
    "seed": _INT,
    "init_std": _REAL,
    "optimizer": (str,),
    "momentum": _REAL,
    "beta1": _REAL,
    "beta2": _REAL,
    "eps": _REAL,
    "weight_decay": _REAL,
    "l2": _REAL,
    "schedule": (str,),
    "warmup": _REAL,
    "lr_step": _INT,
    "lr_gamma": _REAL,
    "val_fraction": _REAL,
    "early_stop": _INT,
    "max_iter": _INT,
    "tol": _REAL,
    "history_size": _INT,
    "standardize": (bool, np.bool_),
    "kernel": (str,),
    "compute": (str,),
    "on_runaway_loss": (str,),
}


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic (softmax) regression trained by softreg's C++ core.

    Parameters mirror `softreg train`'s flags; the defaults are the seed's recipe (minibatch SGD,
    batch 256, lr 0.1, 10 epochs, W ~ N(0, 0.01^2), b = 0).

    lr, epochs, batch_size, seed, init_std : the recipe.
    threads : threads to train and predict with; None: all cores. Results do not depend on it.
    optimizer : "sgd", "momentum", "nesterov", "adam", "adamw" or "lbfgs" (full-batch, to `tol` or
        `max_iter` iterations; then n_iter_ is the iterations taken).
    momentum, beta1, beta2, eps, weight_decay : the optimizers' settings.
    l2 : the objective is mean cross-entropy + l2/2 ||W||^2; scikit-learn's C is 1 / (l2 * n_samples).
    schedule, warmup, lr_step, lr_gamma : the learning-rate schedule ("constant", "step", "cosine").
    val_fraction, early_stop : a seeded, stratified hold-out of the training rows, and stopping after
        `early_stop` epochs without a better validation accuracy (the best epoch's model is kept).
    max_iter, tol, history_size : L-BFGS's settings.
    standardize : train on standardized inputs; the scaling is folded into coef_ and intercept_.
    kernel : "fast" (SIMD) or "naive" (the Eigen reference path).
    compute : "f32", or "bf16": the fast path's multiply-adds on bfloat16 values (`softreg train
        --compute bf16`; plain SGD without l2 or standardize, on CPUs with AVX-512 BF16:
        softreg.bf16_supported()). About twice as fast for large models; sums and weights stay float32.
    on_runaway_loss : what to do when a batch's loss runs far above ln K (100 ln K, the CLI's
        divergence check): "warn" (go on, and warn with a ConvergenceWarning once the fit ends, as
        scikit-learn's SGD estimators go on) or "raise" (stop with softreg.TrainingDiverged, as
        `softreg train` does). A non-finite loss always raises TrainingDiverged.
    warm_start : fit starts from the previous fit's weights instead of the seed's.

    Attributes: classes_, coef_ (K, D) float32, intercept_ (K,) float32, n_features_in_, n_iter_,
    history_ (per-epoch train loss and accuracy, and validation figures when there is a hold-out).
    """

    def __init__(
        self,
        lr=0.1,
        epochs=10,
        batch_size=256,
        seed=0,
        init_std=0.01,
        threads=None,
        optimizer="sgd",
        momentum=0.9,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.01,
        l2=0.0,
        schedule="constant",
        warmup=0,
        lr_step=1,
        lr_gamma=0.1,
        val_fraction=0.0,
        early_stop=0,
        max_iter=100,
        tol=1e-4,
        history_size=100,
        standardize=False,
        kernel="fast",
        compute="f32",
        on_runaway_loss="warn",
        warm_start=False,
    ):
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.init_std = init_std
        self.threads = threads
        self.optimizer = optimizer
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.l2 = l2
        self.schedule = schedule
        self.warmup = warmup
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.val_fraction = val_fraction
        self.early_stop = early_stop
        self.max_iter = max_iter
        self.tol = tol
        self.history_size = history_size
        self.standardize = standardize
        self.kernel = kernel
        self.compute = compute
        self.on_runaway_loss = on_runaway_loss
        self.warm_start = warm_start

    # ---- scikit-learn's protocol ------------------------------------------------------------------

    def fit(self, X, y):
        """Trains on X (n_samples, n_features) and labels y (any hashable, sortable values)."""
        with _Unchanged(self):
            X, y = _validate_data(self, X, y, dtype=_ROW_DTYPES, order="C", reset=True)
            check_classification_targets(y)
            classes, y_index = np.unique(y, return_inverse=True)
            _check_class_count(classes)
            start = None
            if self.warm_start and getattr(self, "_state", None) is not None:
                same = np.array_equal(classes, self.classes_) and self._state["coef"].shape[1] == X.shape[1]
                if not same:
                    raise ValueError("warm_start needs the classes and feature count of the previous fit")
                start = self._state
            result = _core.fit(X, y_index.astype(np.uint16), len(classes), self._core_params(), start, 0)
            self._take(result, classes, X.dtype)
            self.n_iter_ = result.get("lbfgs_iterations", result["epochs_done"])
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch of minibatch steps on (X, y), continuing from the previous call (or fit).

        `classes` (every class that will ever be seen) is required on the first call. The optimizer's
        state (momentum, moments) carries over between calls. n_iter_ counts the epochs in all.
        """
        first = getattr(self, "_state", None) is None
        with _Unchanged(self):
            if self.optimizer == "lbfgs":
                raise ValueError("partial_fit takes minibatch steps; optimizer='lbfgs' fits the whole set: use fit")
            if self.standardize:
                raise ValueError("standardize=True needs the whole training set at once: use fit")
            if self.schedule != "constant" or self.warmup != 0:
                raise ValueError("partial_fit runs one epoch at a time: it needs schedule='constant', warmup=0")
            if first:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit")
                classes = np.unique(np.asarray(classes))
                check_classification_targets(classes)
                _check_class_count(classes)
            elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes {classes!r} are not those of the first call, {self.classes_!r}")
            X, y = _validate_data(self, X, y, dtype=_ROW_DTYPES, order="C", reset=first)
            if not first and (X.dtype == np.uint8) != (self._row_dtype == "u8"):
                # Pixels are seen as x/255, other rows as they are: one model cannot learn from both.
                raise ValueError(
                    f"X is {X.dtype}, but the earlier calls gave "
                    + ("uint8 pixels (seen as x/255)" if self._row_dtype == "u8" else "rows of numbers taken as they are")
                    + ": give every call the same kind of rows")
            check_classification_targets(y)
            known = classes if first else self.classes_
            y_index = np.searchsorted(known, y)
            y_index = np.minimum(y_index, len(known) - 1)
            unknown = known[y_index] != y
            if np.any(unknown):
                raise ValueError(f"y holds labels not in classes: {np.unique(y[unknown])!r}")
            params = self._core_params()
            if first:
                params["epochs"] = 1
                result = _core.fit(X, y_index.astype(np.uint16), len(known), params, None, 0)
            else:
                result = _core.fit(X, y_index.astype(np.uint16), len(known), params,
                                   self._state, 1)
            self._take(result, known, X.dtype)
            self.n_iter_ = result["epochs_done"]
        return self

    def decision_function(self, X):
        """Logits (n_samples, K); for two classes the margin of classes_[1] over classes_[0], (n_samples,)."""
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict(self, X):
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_proba(self, X):
        logits = self._logits(X)
        if logits.shape[1] == 2:  # from the margin, so that it ranks exactly as decision_function
            p1 = expit(logits[:, 1] - logits[:, 0])
            return np.column_stack([1 - p1, p1])
        return softmax(logits, axis=1)

    def predict_log_proba(self, X):
        return log_softmax(self._logits(X), axis=1)

    def _more_tags(self):
        return {"preserves_dtype": [], "X_types": ["2darray"]}

    # ---- model files ------------------------------------------------------------------------------

    def save(self, path, image_shape=None):
        """Writes the model as `softreg train` does (model.safetensors): `softreg eval`, `softreg
        predict` and softreg.load read it. Fitted on uint8 rows, the model is one of images of
        `image_shape` (height, width), by default square; otherwise one of feature vectors."""
        check_is_fitted(self)
        D = self.n_features_in_
        pixels = self._row_dtype == "u8"
        if image_shape is not None:
            height, width = (int(v) for v in image_shape)
            if height * width != D:
                raise ValueError(f"image_shape {image_shape!r} does not hold {D} features")
            kind = "images"
        elif pixels and math.isqrt(D) ** 2 == D:
            height = width = math.isqrt(D)
            kind = "images"
        else:
            height, width, kind = 1, D, "features"
        names = [str(c) for c in self.classes_]
        extra = {"python_classes": json.dumps(self.classes_.tolist()), "python_classes_dtype": self.classes_.dtype.str}
        if kind == "features" and hasattr(self, "feature_names_in_"):
            # A DataFrame's columns: `softreg predict` and `eval` then read a table's columns by these names.
            extra["feature_names"] = json.dumps([str(name) for name in self.feature_names_in_])
        _core.save(str(path), self.coef_, self.intercept_, names, height, width, kind, self._row_dtype,
                   self._core_params(), self._state, extra)

    # ---- internals --------------------------------------------------------------------------------

    def _threads(self):
        if self.threads is None:
            return _core.hardware_threads()
        if not isinstance(self.threads, numbers.Integral) or isinstance(self.threads, bool) or self.threads < 1:
            raise ValueError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        return int(self.threads)

    def _core_params(self):
        params = {}
        for name, types in _PARAM_TYPES.items():
            value = getattr(self, name)
            is_bool = isinstance(value, (bool, np.bool_))
            if not isinstance(value, types) or (is_bool and name != "standardize"):
                raise TypeError(f"{name} must be of type {types[0].__name__}, got {value!r}")
            if types is _INT:
                value = int(value)
                low = 1 if name == "batch_size" else 0 if name == "seed" else -(2**31)
                high = 2**64 if name == "seed" else 2**63 if name == "batch_size" else 2**31
                if not low <= value < high:
                    raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
            elif types is _REAL:
                value = float(value)
            else:
                value = bool(value) if is_bool else str(value)
            params[name] = value
        params["threads"] = self._threads()
        return params

    def _take(self, result, classes, dtype):
        if result["runaway_batches"]:
            warnings.warn(
                f"the training loss ran above {_core.RUNAWAY_LOSS_FACTOR:g} ln(K) in {result['runaway_batches']} "
                "batches: the learning rate is too large for these inputs (try a smaller lr, or "
                "standardize=True)", ConvergenceWarning)
        self.classes_ = classes
        self.coef_ = result["coef"]
        self.intercept_ = result["intercept"]
        self.history_ = result["history"]
        self._state = result["state"]
        self._row_dtype = "u8" if dtype == np.uint8 else "f32"

    def _logits(self, X):
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=_ROW_DTYPES, order="C", reset=False)
        if getattr(self, "_row_dtype", "f32") == "u8" and X.dtype != np.uint8 and X.size and np.abs(X).max() > 1:
            # Pixels in 0..255 as floats would be read 255 times too bright: said, not silently mispredicted.
            warnings.warn(
                f"this model was fitted on uint8 pixels, which it sees as x/255, but X is {X.dtype} with values "
                "above 1, which it takes as they are: pass the uint8 pixels, or X / 255", UserWarning, stacklevel=3)
        return _core.logits(X, self.coef_, self.intercept_, self._threads())


def _check_class_count(classes):
    if len(classes) < 2:
        raise ValueError(
            "SoftmaxRegression needs samples of at least 2 classes in the data, but the data contains only "
            f"one class: {classes[0]!r}" if len(classes) else "SoftmaxRegression needs at least 2 classes")
    if len(classes) > _core.MAX_CLASSES:
        raise ValueError(f"SoftmaxRegression takes at most {_core.MAX_CLASSES} classes, got {len(classes)}")


class _Unchanged:
    """Puts the estimator's attributes back when the block raises (a bad input, a Ctrl-C), so that it
    stays as usable as it was before the call."""

    def __init__(self, estimator):
        self.estimator = estimator

    def __enter__(self):
        self.saved = dict(self.estimator.__dict__)

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.estimator.__dict__.clear()
            self.estimator.__dict__.update(self.saved)
        return False


def load(path):
    """A fitted SoftmaxRegression from a model file written by `softreg train` or SoftmaxRegression.save
    (or the run folder of `softreg train` that holds it, as `softreg eval --model` takes).

    Its classes_ are the labels it was fitted on when Python saved it; for a model from the CLI they
    are 0..K-1, with the names in class_names_. A model of a table's (or DataFrame's) columns has their
    names in feature_names_in_."""
    model = _core.load(str(path))
    params = dict(model.get("params", {}))
    estimator = SoftmaxRegression(**params)
    estimator.coef_ = model["coef"]
    estimator.intercept_ = model["intercept"]
    estimator.n_features_in_ = estimator.coef_.shape[1]
    meta = model["metadata"]
    if "python_classes" in meta:
        estimator.classes_ = np.array(json.loads(meta["python_classes"]), dtype=np.dtype(meta["python_classes_dtype"]))
    else:
        estimator.classes_ = np.arange(estimator.coef_.shape[0])
    estimator.class_names_ = list(model["class_names"])
    if model["input"] == "features" and len(model["feature_names"]) == estimator.n_features_in_:
        # The columns of the table (or DataFrame) it was fitted on: a DataFrame given to predict is checked
        # against them, as scikit-learn checks any estimator fitted on one.
        estimator.feature_names_in_ = np.array(model["feature_names"], dtype=object)
    estimator.history_ = []
    estimator.n_iter_ = model["state"]["epochs_done"] if "state" in model else 0
    if "state" in model:
        estimator._state = model["state"]
    else:  # weights alone (another tool's file): they are where training would continue from
        estimator._state = None
    estimator._row_dtype = model["dtype"]
    return estimator
