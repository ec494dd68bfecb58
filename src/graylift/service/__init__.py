"""The application service: what the CLI (and the HTTP API) call. No printing, no argument parsing."""

from graylift.service.base import DEFAULT_CONFIG, FleetBuilder, config_path_from_env
from graylift.service.cmdb import CmdbService, SurveyRow, parse_hosts_file
from graylift.service.doctor import DoctorService, Finding
from graylift.service.releases import PlanView
from graylift.service.schedules import ScheduleService
from graylift.service.workers import WorkerService, batch_timings
from graylift.store import HostRunRecord, JournalEntry, ReleaseRecord


class Graylift(DoctorService, ScheduleService, WorkerService, CmdbService):
    """The whole service over one config file and one state database."""


def example_config() -> str:
    """The annotated example config that `graylift init` writes."""
    from graylift.config import example_config_text

    return example_config_text()


__all__ = ["DEFAULT_CONFIG", "Finding", "FleetBuilder", "Graylift", "HostRunRecord", "JournalEntry", "PlanView",
           "ReleaseRecord", "SurveyRow", "batch_timings", "config_path_from_env", "example_config",
           "parse_hosts_file"]
