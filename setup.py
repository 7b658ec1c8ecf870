"""Chicago Taxi tip model: a TFX pipeline for LocalDagRunner and Kubeflow Pipelines.

Loose requirements here; the exact, tested set is in constraints.txt:
    pip install --ignore-requires-python -c constraints.txt -e .
(tfx 1.16 declares Requires-Python <3.11, but its wheels work on 3.11.)
"""

from setuptools import find_packages, setup

# The project's top-level packages (subpackages such as components/drift_check come with them).
PACKAGES = ['foundation', 'taxi_model', 'components', 'pipeline', 'serving', 'monitoring', 'scheduler', 'release',
            'provenance', 'reports', 'cli', 'schemas']

setup(
    name='taxi-tfx-pipeline',
    version='0.1.0',
    description='Chicago Taxi tip prediction as a TFX pipeline on Kubeflow',
    python_requires='>=3.9,<3.12',
    packages=find_packages(include=[name for top in PACKAGES for name in (top, f'{top}.*')]),
    package_data={'schemas': ['*.pbtxt'], 'release': ['approvers.yaml'], 'provenance': ['*.yaml'],
                  'reports': ['templates/*.html']},
    install_requires=[
        'tfx>=1.16,<1.17',
        'tensorflow>=2.16,<2.17',
        'tensorflow-transform>=1.16,<1.17',
        'tensorflow-model-analysis>=0.47,<0.48',
        'tensorflow-data-validation>=1.16,<1.17',
        'ml-metadata>=1.16,<1.17',
        'apache-beam>=2.59,<2.60',
        'kfp>=2.7,<2.8',
        'tensorflow-serving-api>=2.16,<2.17',
        'tensorflow-metadata>=1.16,<1.17',
        'tfx-bsl>=1.16,<1.17',
        'tf-keras>=2.16,<2.17',
        # The Tuner's search (taxi_model/tuning.py); TFX installs it too, but we import it.
        'keras-tuner>=1.4,<1.5',
        'kfp-server-api>=2.0,<2.1',
        'numpy>=1.26,<2',
        'pyarrow>=10,<11',
        'protobuf>=4.25,<5',
        'grpcio>=1.60',
        'absl-py>=1.4,<2',
        'APScheduler>=3.10,<4',
        # The release policy (release/approvers.yaml) and the model card's prose.
        'PyYAML>=6,<7',
        # Release decisions' SSH signatures, verified without a process per decision (release/signing.py).
        'cryptography>=42',
        # Pages (reports/templates).
        'Jinja2>=3.1,<4',
        'MarkupSafe>=2.1',
        # The monitor's and the canary's statistics, its metrics.
        'scipy>=1.12,<2',
        'scikit-learn>=1.5,<2',
        'prometheus_client>=0.20',
        # The clients (REST) and the Kubeflow API client's transport.
        'requests>=2.31',
        'urllib3>=1.26,<2',
        # The local KFP runner reads the pipeline image's Dockerfile.
        'dockerfile-parse>=2,<3',
    ],
    # openapi-spec-validator: the served OpenAPI documents are checked against the OpenAPI 3.1 schema.
    # pytest-xdist: `make test` runs the suite on two workers, one per core of the machine CI runs on.
    extras_require={'test': ['pytest', 'pytest-xdist', 'openapi-spec-validator']},
    entry_points={'console_scripts': ['taxi-pipeline=cli.main:console_main']},
)
