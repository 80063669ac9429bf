"""softreg: softmax regression on a fast C++ core, with a scikit-learn estimator.

    import softreg
    X_train, y_train, X_test, y_test = softreg.datasets.load("fashion-mnist")
    model = softreg.SoftmaxRegression().fit(X_train, y_train)   # the seed's recipe
    model.score(X_test, y_test)
    model.save("model.safetensors")                             # what `softreg train` writes
    softreg.load("runs/latest/model.safetensors")               # and what it wrote
"""
from . import datasets
from ._core import Error, TrainingDiverged, __version__, bf16_supported
from ._estimator import SoftmaxRegression, load

__all__ = ["SoftmaxRegression", "load", "datasets", "Error", "TrainingDiverged", "__version__", "bf16_supported"]
