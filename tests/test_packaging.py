"""What `pip install .` ships: every file under sst2/resources (the embedded GLUE SST-2,
the serving ops, the behaviour tests) matches setup.cfg's package_data, so a
non-editable install reads what a checkout does."""

import configparser
import fnmatch
import os

from tests.helpers import REPO


def test_every_resource_file_is_package_data():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    patterns = [p.strip() for p in config["options.package_data"]["sst2"].split(",")]
    root = os.path.join(REPO, "sst2")
    found = [os.path.relpath(os.path.join(folder, name), root)
             for folder, _, names in os.walk(os.path.join(root, "resources")) for name in names
             if not name.endswith((".pyc", ".py"))]
    assert found
    missing = [f for f in found if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"add to setup.cfg's [options.package_data]: {missing}"
