# Flex Template launcher image of kameleoon-amplitude-stream (docs/dataflow.md).
#
# At launch, Dataflow runs main.py with each template parameter as --name=value; it
# builds the graph, submits the streaming job and returns. Workers run Beam's own
# Python 3.11 SDK container of the same Beam version and install this project from the
# source package Beam builds from setup.py (FLEX_TEMPLATE_PYTHON_SETUP_FILE).
#
# Google requires its launcher base image; :latest is its current release. Pin a
# digest (...-base@sha256:...) for builds that must be reproducible.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest

ARG WORKDIR=/template
WORKDIR ${WORKDIR}

# Beam first, in its own cached layer: it is most of the build time. The pin must equal
# pyproject.toml's (tests/pipeline/test_template.py checks it), so that the graph built
# here runs on the worker container of the same version. At each launch Beam builds the
# workers' source package from setup.py with the setuptools installed here, so it gets
# the build backend pyproject.toml asks for.
RUN pip install --no-cache-dir "apache-beam[gcp]==2.77.0" "setuptools>=68" wheel

# pyproject.toml is the one list of dependencies: installing the project adds the rest.
COPY . .
RUN pip install --no-cache-dir .

ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/main.py"
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"
