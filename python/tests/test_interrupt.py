"""Ctrl-C during a fit: KeyboardInterrupt within a batch or so, the estimator as it was before."""
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, signal, threading, time
    import numpy as np
    from softreg import SoftmaxRegression

    rng = np.random.default_rng(0)
    X = rng.random((20000, 200), dtype=np.float32)
    y = rng.integers(0, 5, size=20000)
    model = SoftmaxRegression(epochs=1).fit(X, y)
    before = model.coef_.copy()
    model.set_params(epochs=100000)  # hours: only the interrupt can end it
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        model.fit(X, y)
        print("fit finished")
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - start:.2f} s")
    assert np.array_equal(model.coef_, before), "the interrupted fit changed the model"
    model.set_params(epochs=1)
    assert model.fit(X, y).score(X, y) > 0  # still usable
    print("usable")
    """
)


def test_ctrl_c_stops_fit_and_leaves_the_estimator_usable():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].startswith("interrupted after"), out.stdout
    # An epoch of 20,000 x 200 takes milliseconds; the interrupt lands half a second in.
    assert float(lines[0].split()[2]) < 30
    assert lines[1] == "usable"
