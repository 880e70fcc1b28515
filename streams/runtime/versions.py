"""The aiokafka and faust-streaming versions every touch in this package was tested against.

Each touch calls `require_tested()` when it installs: a worker on an untested upgrade refuses
to start instead of running patched code against internals that may have moved
(docs/runtime.md says what to re-check).
"""

from __future__ import annotations

import aiokafka
import faust
from packaging.version import Version

#: [low, high) of the versions the runtime package was written and tested against.
AIOKAFKA_RANGE = (Version("0.14.0"), Version("0.15"))
FAUST_RANGE = (Version("0.15.3"), Version("0.16"))


def require_tested(module: str) -> None:
    """Raise RuntimeError naming `module` when aiokafka or Faust is outside its tested range."""
    for name, version, (low, high) in (("aiokafka", aiokafka.__version__, AIOKAFKA_RANGE),
                                       ("faust-streaming", faust.__version__, FAUST_RANGE)):
        if not low <= Version(version) < high:
            raise RuntimeError(f"{name} {version} outside [{low}, {high}): re-check {module} "
                               "and docs/runtime.md against the installed version")
