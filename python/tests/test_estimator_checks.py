"""scikit-learn's own estimator checks, every one of them, on SoftmaxRegression with its defaults."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from softreg import SoftmaxRegression


@parametrize_with_checks([SoftmaxRegression()])
def test_sklearn_check(estimator, check):
    check(estimator)


def test_check_estimator_as_a_whole():
    # The same checks through the public entry point the issue names, in one call.
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(SoftmaxRegression())
