"""IdleWatch: a job skips its walk only while what it saw at an empty pass is unchanged."""

from registry.service.idle import IdleWatch


def test_an_empty_pass_is_trusted_while_nothing_moved() -> None:
    watch = IdleWatch()
    assert not watch.unchanged((5, 2))  # nothing remembered yet: walk
    watch.found(False, (5, 2))
    assert watch.unchanged((5, 2))
    assert not watch.unchanged((6, 2))  # the change log moved
    assert not watch.unchanged((5, 3))  # a blob was stored


def test_work_found_forgets_the_empty_pass() -> None:
    watch = IdleWatch()
    watch.found(False, (1, 1))
    watch.found(True, (1, 1))
    assert not watch.unchanged((1, 1))


def test_an_empty_pass_is_looked_at_again_after_recheck() -> None:
    watch = IdleWatch(recheck=0.0)
    watch.found(False, (1, 1))
    assert not watch.unchanged((1, 1))
