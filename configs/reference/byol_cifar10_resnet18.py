r"""BYOL on CIFAR-10 with ResNet-18, solo-learn's recipe (1000 epochs, batch 256, LARS).

  python -m ssl_jax.main --config configs/reference/byol_cifar10_resnet18.py --workdir /tmp/byol_c10

Published (solo-learn model zoo, linear top-1 after 1000 epochs): 92.58.
Data: tfds cifar10 as array_record; prepare it once with
  tfds build cifar10 --file_format=array_record   (add --data_dir=... and set config.data.data_dir)
Tests build the config and run a few steps on synthetic data of CIFAR-10's shape.
"""

from ssl_jax.recipes import cifar10_resnet18_config


def get_config():
  return cifar10_resnet18_config(
    "byol",
    learning_rate=1.0,
    weight_decay=1e-5,
    base_momentum=0.99,
    projector_hidden_dim=4096,
    projector_dim=256,
    predictor_hidden_dim=4096,
  )
