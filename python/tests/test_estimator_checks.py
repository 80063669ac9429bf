"""scikit-learn's own estimator checks, every one of them, on SoftmaxRegression with its defaults."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from softreg import SoftmaxRegression


@parametrize_with_checks([SoftmaxRegression()])
def test_sklearn_check(estimator, check):
    check(estimator)
