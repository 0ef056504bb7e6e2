"""LocalMesh's replicas option, checked before anything starts."""

from __future__ import annotations

import pytest

from services.launcher.mesh import LocalMesh


@pytest.mark.parametrize("service", ["identity", "postgres", "orchestrater"])
def test_mesh_refuses_replicas_of_a_service_that_has_none(service: str) -> None:
    with pytest.raises(ValueError, match=service):
        LocalMesh(replicas={service: 2})
