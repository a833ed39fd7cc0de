"""User errors end the process with one line on stderr (and in the run's log), never a traceback."""
from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Callable

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from darts.divergence import Diverged
from darts.tuning.trial import VARIABLE as TRIAL

log = logging.getLogger("darts")
USER_ERRORS = (ValueError, FileNotFoundError, Diverged)


def user_error(err: BaseException) -> BaseException | None:
    """The user error behind ``err`` (a bad value, a missing or corrupt file, a divergence), unwrapping Hydra's
    InstantiationException; None for anything else (a bug: it keeps its traceback)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, USER_ERRORS) else None


def reporting(main: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """``main``, where a user error exits with status 1 and its message as one line on stderr (and in the run's
    log; a tuning trial's is raised, so that the sweep records it failed and goes on); the traceback only with
    HYDRA_FULL_ERROR=1."""
    @functools.wraps(main)
    def wrapped(cfg: DictConfig) -> None:
        try:
            main(cfg)
        except Exception as err:
            cause = user_error(err)
            if cause is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if int(os.environ.get("RANK", 0)) > 0:  # a torchrun job's other ranks: rank 0 says it
                sys.exit(1)
            message = " ".join(f"{type(cause).__name__}: {cause}".split())
            log.error(message)
            if os.environ.get(TRIAL):  # a tuning trial fails, and the study goes on with the next one
                raise cause from None
            sys.exit(message)
    return wrapped
