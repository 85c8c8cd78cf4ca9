"""Federated fine-tuning with Flower: LoRA adapters (and the task head) trained on silos that never share their
data, averaged by the server each round (FedAvg or FedProx), optionally with differential privacy on the client
updates; the result is an ordinary run folder.

:mod:`~tuneforge.training.federated.config` holds the options, :mod:`~tuneforge.training.federated.split` the
IID and Dirichlet label-skew splits of one file into simulated silos, :mod:`~tuneforge.training.federated.client`
the local training and the ``ClientApp``, :mod:`~tuneforge.training.federated.server` the strategy and the
``ServerApp``, :mod:`~tuneforge.training.federated.run` the run (simulation) and
:mod:`~tuneforge.training.federated.process` real Flower server and client processes.
"""

from tuneforge.training.federated.config import FederatedConfig, make_federated_config
from tuneforge.training.federated.split import label_skew, parse_split, split_dirichlet, split_iid

__all__ = ["FederatedConfig", "label_skew", "make_federated_config", "parse_split", "split_dirichlet",
           "split_iid"]
