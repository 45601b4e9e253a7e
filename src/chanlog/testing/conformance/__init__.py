"""The backend conformance suite: what every chanlog storage backend must do.

:class:`BackendConformance` gathers every case class; a backend package subclasses it as
``Test...`` and overrides the ``open_backend`` fixture (and ``open_read_only`` when its
factory takes ``read_only=True``). See :mod:`chanlog.testing` for an example.

The case classes can also be used one at a time (each is a complete pytest class on the
same fixtures), e.g. to run only the capability cases of a backend under development:

- :class:`~chanlog.testing.conformance.protocol.BackendProtocolCases`: the
  :class:`~chanlog.backends.base.Backend` protocol driven directly;
- :class:`~chanlog.testing.conformance.store_cases.StoreCases`: an
  :class:`~chanlog.store.EventStore` on the backend;
- :class:`~chanlog.testing.conformance.sharing.DurableCases` and
  :class:`~chanlog.testing.conformance.sharing.SharedCases`: reopening, several handles;
- one class per capability of :mod:`chanlog.backends.capabilities`, in
  :mod:`chanlog.testing.conformance.capabilities`, each skipped when the backend lacks it;
- the durable consumers of :mod:`chanlog.backends.consumer_store`:
  :class:`~chanlog.testing.conformance.consumers.KeepsConsumersCases` (the rules, on one
  handle),
  :class:`~chanlog.testing.conformance.consumer_sharing.MovesConsumersInTransactionCases`,
  :class:`~chanlog.testing.conformance.consumer_sharing.ConsumerSharingCases` (several
  handles, concurrent holders) and
  :class:`~chanlog.testing.conformance.consumer_sharing.ReadOnlyConsumersCases`, each
  skipped when the backend lacks the capability;
- :class:`~chanlog.testing.conformance.read_only.ReadOnlyCases`: a read-only handle.
"""

from __future__ import annotations

from chanlog.testing.conformance.capabilities import (
    AppendsUnlessKnownCases,
    CountsStreamsCases,
    DeletesSnapshotsInTransactionCases,
    FileBackedCases,
    FindsManyCases,
    ManagesSnapshotsCases,
    MayBeReadOnlyCases,
    ReadsStreamPayloadsCases,
    RecordsSerializerCases,
    RemembersHeadCases,
    SavesSnapshotsInTransactionCases,
    StreamIndexCases,
)
from chanlog.testing.conformance.consumer_sharing import (
    ConsumerSharingCases,
    MovesConsumersInTransactionCases,
    ReadOnlyConsumersCases,
)
from chanlog.testing.conformance.consumers import KeepsConsumersCases
from chanlog.testing.conformance.fixtures import ConformanceFixtures, OpenBackend
from chanlog.testing.conformance.protocol import BackendProtocolCases
from chanlog.testing.conformance.read_only import ReadOnlyCases
from chanlog.testing.conformance.sharing import DurableCases, SharedCases
from chanlog.testing.conformance.store_cases import StoreCases

__all__ = [
    "AppendsUnlessKnownCases",
    "BackendConformance",
    "BackendProtocolCases",
    "CapabilityCases",
    "ConformanceFixtures",
    "ConsumerSharingCases",
    "CountsStreamsCases",
    "DeletesSnapshotsInTransactionCases",
    "DurableCases",
    "FileBackedCases",
    "FindsManyCases",
    "KeepsConsumersCases",
    "ManagesSnapshotsCases",
    "MayBeReadOnlyCases",
    "MovesConsumersInTransactionCases",
    "OpenBackend",
    "ReadOnlyCases",
    "ReadOnlyConsumersCases",
    "ReadsStreamPayloadsCases",
    "RecordsSerializerCases",
    "RemembersHeadCases",
    "SavesSnapshotsInTransactionCases",
    "SharedCases",
    "StoreCases",
    "StreamIndexCases",
]


class CapabilityCases(
    FindsManyCases,
    AppendsUnlessKnownCases,
    SavesSnapshotsInTransactionCases,
    DeletesSnapshotsInTransactionCases,
    ReadsStreamPayloadsCases,
    StreamIndexCases,
    CountsStreamsCases,
    RemembersHeadCases,
    FileBackedCases,
    MayBeReadOnlyCases,
    ManagesSnapshotsCases,
    KeepsConsumersCases,
    MovesConsumersInTransactionCases,
    RecordsSerializerCases,
):
    """Every capability case class: each test skips when the backend lacks its capability."""


class BackendConformance(
    BackendProtocolCases,
    StoreCases,
    DurableCases,
    SharedCases,
    CapabilityCases,
    ConsumerSharingCases,
    ReadOnlyCases,
    ReadOnlyConsumersCases,
):
    """Pytest test class every backend runs. Subclass it as ``TestXxx`` and override the
    ``open_backend`` fixture (and ``open_read_only`` when the backend can be opened
    read-only); set ``durable = False`` for a backend whose log does not outlive its handle
    (the reopen tests are then skipped). Tests that need several handles on one log run
    when the backend says ``shared = True``; each capability's tests run when the backend
    implements it.
    """
