"""The seed's Python API (`ABTestingFramework`) on top of the durable ExperimentStore.

Seed usage (runs as written; the seed imported it as `from ab_testing import ABTestingFramework`):

    framework = ABTestingFramework()
    framework.create_experiment(experiment_id='v30_vs_v31', name='...', description='...',
                                variant_a='v3.0', variant_b='v3.1', traffic_split=0.5)
    framework.activate_experiment('v30_vs_v31')
    model_version, exp_id = framework.get_model_version_for_user('user123')  # ('v3.1', 'v30_vs_v31')
    framework.record_prediction(experiment_id='v30_vs_v31', user_id='test_user', signal='long',
                                confidence=0.75)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.assignment import assign_variant
from experiments.store import ExperimentStore


@dataclass(frozen=True)
class Assignment:
    """Which variant (and model version) of which experiment a user is served."""

    experiment_id: str
    variant: str
    model_version: str


def assignment_for(experiment: dict[str, Any], user_id: str) -> Assignment:
    """The sticky assignment of a user within an experiment dict (pure, no I/O)."""
    variant = assign_variant(experiment["salt"], user_id, experiment["traffic_split"])
    version = experiment["variant_b"] if variant == "B" else experiment["variant_a"]
    return Assignment(experiment["experiment_id"], variant, version)


class ABTestingFramework:
    """A/B experiments between model versions: create, activate, assign users, record, measure."""

    def __init__(self, database_url: str | None = None, store: ExperimentStore | None = None) -> None:
        self.store = store or ExperimentStore(database_url)

    def create_experiment(
        self,
        experiment_id: str,
        name: str,
        description: str,
        variant_a: str,
        variant_b: str,
        traffic_split: float = 0.5,
        salt: str | None = None,
    ) -> dict[str, Any]:
        """Create an experiment (status 'created'); traffic_split is the share sent to variant B."""
        return self.store.create_experiment(experiment_id, name, description, variant_a, variant_b, traffic_split, salt)

    def activate_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Activate it; only one experiment is active at a time."""
        return self.store.activate_experiment(experiment_id)

    def stop_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Stop the active experiment; its data stays readable."""
        return self.store.stop_experiment(experiment_id)

    def list_experiments(self) -> list[dict[str, Any]]:
        """All experiments, oldest first."""
        return self.store.list_experiments()

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment (NotFound if unknown)."""
        return self.store.get_experiment(experiment_id)

    def active_experiment(self) -> dict[str, Any] | None:
        """The active experiment or None."""
        return self.store.active_experiment()

    def assign(self, user_id: str) -> Assignment | None:
        """The user's assignment in the active experiment, or None when none is active."""
        experiment = self.store.active_experiment()
        return assignment_for(experiment, user_id) if experiment is not None else None

    def get_model_version_for_user(self, user_id: str) -> tuple[str | None, str | None]:
        """(model_version, experiment_id) for the user; (None, None) when no experiment is active.

        (None, None) is what the seed implied: without an active experiment the caller serves its
        own active model version and records nothing.
        """
        assignment = self.assign(user_id)
        if assignment is None:
            return None, None
        return assignment.model_version, assignment.experiment_id

    def record_prediction(
        self,
        experiment_id: str,
        user_id: str,
        signal: str,
        confidence: float,
        stage1_prob: float | None = None,
        stage2_prob: float | None = None,
        variant: str | None = None,
        model_version: str | None = None,
    ) -> str:
        """Persist a prediction; variant and model_version default to the user's assignment."""
        if variant is None or model_version is None:
            experiment = self.store.get_experiment(experiment_id)
            variant = variant or assignment_for(experiment, user_id).variant
            model_version = model_version or experiment["variant_b" if variant == "B" else "variant_a"]
        return self.store.record_prediction(
            experiment_id, user_id, variant, model_version, signal, confidence, stage1_prob, stage2_prob
        )

    def record_outcome(self, prediction_id: str, pips: float) -> dict[str, Any]:
        """Record the realized pips of a served prediction (idempotent for equal pips)."""
        return self.store.record_outcome(prediction_id, pips)

    def get_metrics(self, experiment_id: str, min_samples: int = 30, alpha: float = 0.05) -> dict[str, Any]:
        """Seed-shaped per-variant metrics plus B-vs-A statistics and the winner."""
        return self.store.metrics(experiment_id, min_samples=min_samples, alpha=alpha)

    def get_active_version(self) -> str | None:
        """The service's persisted active model version."""
        return self.store.get_active_version()

    def set_active_version(self, version: str) -> None:
        """Persist the service's active model version."""
        self.store.set_active_version(version)

    def close(self) -> None:
        """Release database connections."""
        self.store.close()
