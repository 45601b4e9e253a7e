"""``generate``: append a deterministic workload (channels and their lifecycles)."""

from __future__ import annotations

import click

from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError
from chanlog.cli.records_io import newly_appended
from chanlog.errors import InvalidTransition
from chanlog.store import EventStore

__all__ = ["generate_command"]


@click.command("generate")
@click.option("--channels", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--turns", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--participants", type=click.IntRange(min=2, max=255), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events per atomic, durable commit.",
)
@json_option
@pass_cli
def generate_command(
    state: CliContext, channels: int, turns: int, participants: int, seed: int, batch_size: int
) -> None:
    """Append a generated workload: per channel a funded DirectFund objective, TURNS
    supported turns, sometimes a challenge, then a defund with withdrawals, plus messages.

    The same options give the same events (ids included), so generating twice into one log
    appends nothing the second time. The same seed with other options names the same
    entities with other events: that is refused (exit 4), saying so; choose another seed.
    """
    # Imported here: the generator is only needed by this command, not at CLI start-up.
    from chanlog.workload.generator import Workload, WorkloadConfig

    workload = Workload(
        WorkloadConfig(seed=seed, channels=channels, turns=turns, participants=participants)
    )
    total = len(workload)
    store = state.open_store()
    length_before = len(store)
    done = 0
    appended = 0
    first_offset: int | None = None
    with state.output.progress("generate", total) as update:
        for batch in workload.batches(batch_size):
            # Counted per batch: a snapshot policy may append snapshot-created in between.
            before = len(store)
            try:
                offsets = store.append_batch(batch)
            except InvalidTransition as error:
                if not _held_before(store, error.entity_id, length_before):
                    raise
                raise _generated_with_other_options(error, seed) from error
            appended += sum(newly_appended(offsets, before))
            if first_offset is None and offsets:
                first_offset = offsets[0]
            done += len(batch)
            update(done)
    sample = workload.plans[0].channel_id
    at = _time_travel_offset(store, sample)
    result = {
        "events": total,
        "appended": appended,
        "already_present": total - appended,
        "channels": channels,
        "log_length": len(store),
        "first_offset": first_offset,
        "sample_channel": sample,
        "sample_at": at,
    }
    output = state.output
    if output.json_mode:
        output.json(result)
        return
    output.line(
        f"generated {total} events for {channels} channels: {appended} appended, "
        f"{total - appended} already present; log length {len(store)}"
    )
    output.line(f"try: chanlog show channel {sample} --at {at}")


def _held_before(store: EventStore, entity_id: str, length: int) -> bool:
    """Whether the log held the entity before this run: its refusal then comes from the
    log's own past, not from the workload or a projection of a plugin."""
    first = next(iter(store.read_stream(entity_id)), None)
    return first is not None and first.offset < length


def _generated_with_other_options(error: InvalidTransition, seed: int) -> CliError:
    """The refusal of a generated batch by an entity the log held before: a workload's
    entities are named by its seed alone, so that entity is one of a workload generated from
    the same seed with other options (another ``--channels``, ``--turns`` or
    ``--participants``)."""
    refused = CliError.from_error(error)
    return CliError(
        f"{refused.format_message()}; this log already holds a workload generated with"
        f" --seed {seed} and other options: generate it again with the options it was"
        " generated with (that appends nothing), or choose another --seed",
        refused.exit_code,
    )


def _time_travel_offset(store: EventStore, channel_id: str) -> int:
    """An offset in the middle of the channel's own events: the channel exists before it
    (its first event is folded) and has events after it, so ``show --at`` differs from now
    whatever else the log holds before, between or after them."""
    offsets = [record.offset for record in store.read_stream(channel_id)]
    if len(offsets) < 2:
        return offsets[0] + 1
    return offsets[len(offsets) // 2]
