"""`syndicator run`: the scheduler fires build + send on time and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

from syndicator.config import load_config
from syndicator.scheduler import Runner, slot_for
from tests.conftest import FaultyServer, Project


def test_slot_is_the_newest_fire_time_at_or_before_now() -> None:
    trig = CronTrigger.from_crontab("0 7 * * *", timezone="UTC")
    assert slot_for(trig, datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)) == datetime(2026, 11, 25, 7, 0,
                                                                                    tzinfo=UTC)
    assert slot_for(trig, datetime(2026, 11, 25, 7, 9, 30, tzinfo=UTC)) == datetime(2026, 11, 25, 7, 0,
                                                                                    tzinfo=UTC)
    assert slot_for(trig, datetime(2026, 11, 25, 6, 59, tzinfo=UTC)) == datetime(2026, 11, 24, 7, 0,
                                                                                 tzinfo=UTC)


def _point_at(project: Project, server: FaultyServer) -> None:
    project.port = server.port
    project.write_config()


NEVER = CronTrigger.from_crontab("0 7 1 1 *", timezone="UTC")  # the test fires the job itself


def _wall_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _fire(runner: Runner) -> None:
    """The digest trigger fires now (APScheduler wakes for a changed next run time)."""
    runner.ran.clear()
    runner.scheduler.modify_job("digest", next_run_time=datetime.now(UTC))
    await asyncio.wait_for(runner.ran.wait(), 30)


def test_the_scheduler_builds_and_sends_when_the_trigger_fires_then_stops(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _point_at(project, faulty_smtp)
    config = load_config(project.config)
    runner = Runner(config, _wall_clock, NEVER)

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 30)
        await _fire(runner)
        await _fire(runner)
        runner.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert runner.runs == 2
    assert (project.output / "rss.xml").exists()
    # The second firing found nothing new: each recipient got the one edition once.
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}
    assert not runner.scheduler.running


def test_shutdown_waits_for_the_send_in_flight(project: Project, faulty_smtp: FaultyServer) -> None:
    _point_at(project, faulty_smtp)
    gate = threading.Event()
    faulty_smtp.faults.gate = gate  # the relay holds every DATA until the test lets it go
    runner = Runner(load_config(project.config), _wall_clock, NEVER)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 30)
        runner.scheduler.modify_job("digest", next_run_time=datetime.now(UTC))
        await asyncio.to_thread(faulty_smtp.handler.in_data.wait, 30)  # a message is in flight
        runner.request_stop()  # SIGTERM, as the signal handler does
        gate.set()
        await asyncio.wait_for(task, 30)
        seen["runs"] = runner.runs  # when run() returns, the job has finished
        seen["accepted"] = len(faulty_smtp.handler.accepted)

    asyncio.run(scenario())
    assert seen["runs"] == 1
    # The messages in flight were delivered, not abandoned mid-DATA.
    assert isinstance(seen["accepted"], int) and seen["accepted"] >= 1


def test_run_logs_the_next_run_and_stops_on_sigterm(project: Project, faulty_smtp: FaultyServer) -> None:
    _point_at(project, faulty_smtp)
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    proc = subprocess.Popen([sys.executable, "-m", "syndicator", "run"], cwd=project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert proc.stderr.readline() == "built 7 stories, 14 files written\n"
    first = proc.stderr.readline()
    assert first.startswith("next digest run at ")
    assert first.strip().endswith("07:00:00+00:00")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "stopped" in err
    assert faulty_smtp.handler.accepted == []


def test_run_without_the_secret_fails_at_once(project: Project, faulty_smtp: FaultyServer) -> None:
    _point_at(project, faulty_smtp)
    env = {k: v for k, v in os.environ.items() if k != "SYNDICATOR_TEST_SECRET"}
    env["SYNDICATOR_CONFIG"] = str(project.config)
    proc = subprocess.run([sys.executable, "-m", "syndicator", "run"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == ("error: the environment variable SYNDICATOR_TEST_SECRET (digest.secret_env) "
                           "must hold the secret that signs unsubscribe links\n")


def test_run_serve_hosts_the_web_side_in_the_same_process(project: Project,
                                                          faulty_smtp: FaultyServer) -> None:
    import re
    import urllib.request

    _point_at(project, faulty_smtp)
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    proc = subprocess.Popen([sys.executable, "-m", "syndicator", "run", "--serve", "--port", "0"],
                            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    lines = [proc.stderr.readline() for _ in range(3)]
    found = [re.search(r"at http://127\.0\.0\.1:(\d+)/", line) for line in lines]
    port = next(int(m.group(1)) for m in found if m)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped" in err


def test_feeds_schedule_adds_its_own_build_job(project: Project, faulty_smtp: FaultyServer) -> None:
    project.port = faulty_smtp.port
    text = project.write_config().read_text()
    project.write_config(text.replace("limit = 50", 'limit = 50\nschedule = "*/5 * * * *"'))
    config = load_config(project.config)
    runner = Runner(config, _wall_clock)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 30)
        job = runner.scheduler.get_job("feeds")
        seen["minute"] = job.next_run_time.minute if job else None
        runner.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert isinstance(seen["minute"], int) and seen["minute"] % 5 == 0


def test_a_bad_feeds_schedule_is_a_config_error(project: Project) -> None:
    from click.testing import CliRunner

    from syndicator.cli import cli

    text = project.write_config().read_text()
    project.write_config(text.replace("limit = 50", 'limit = 50\nschedule = "every day"'))
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert result.output == ("error: config/syndicator.toml:17: feeds.schedule: "
                             "expected a 5-field cron expression, got 'every day'\n")
