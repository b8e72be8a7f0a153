r"""SimCLR on CIFAR-10 with ResNet-18, solo-learn's recipe (1000 epochs, batch 256, LARS).

  python -m ssl_jax.main --config configs/reference/simclr_cifar10_resnet18.py --workdir /tmp/simclr_c10

Published (solo-learn model zoo, linear top-1 after 1000 epochs): 90.74.
Data: tfds cifar10 as array_record; prepare it once with
  tfds build cifar10 --file_format=array_record   (add --data_dir=... and set config.data.data_dir)
Tests build the config and run a few steps on synthetic data of CIFAR-10's shape.
"""

from ssl_jax.recipes import cifar10_resnet18_config


def get_config():
  return cifar10_resnet18_config(
    "simclr",
    learning_rate=0.4,
    weight_decay=1e-5,
    temperature=0.2,
    projector_hidden_dim=2048,
    projector_dim=256,
  )
