"""A first boot's user data, carried out by cloud-init's own code: run by Debian's python3 (where the cloud-init
package puts its modules), as `python3 tests/cloudinit_boot.py USER_DATA_FILE WORKDIR`, inside a mount
namespace whose /etc/ssh is a scratch folder (tests/test_cloudinit_wins.py starts it so; the script refuses
to run on a real /etc/ssh).

What cloud-init does with user data, in its order: the user-data processor reads the document and every part
goes to its handler (cloud-config parts merged into one config by each part's Merge-Type, shell scripts
written to the instance's scripts folder); then the modules that touch files or run commands, in the order
of the stages and of Debian's /etc/cloud/cloud.cfg: write-files (init), runcmd (config: it writes the
script), write-files-deferred and scripts-user (final: every script, runcmd's included, in name order).
Prints a JSON report: the merged config's ssh_pwauth and each module that failed.
"""

import json
import logging
import os
import sys

from cloudinit import handlers, helpers, user_data, util
from cloudinit.config import cc_runcmd, cc_scripts_user, cc_write_files, cc_write_files_deferred
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.handlers.shell_script import ShellScriptPartHandler
from cloudinit.settings import PER_INSTANCE

SANDBOX_MARK = "/etc/ssh/.cloudinit-boot-sandbox"
INSTANCE_ID = "i-0123456789"
LOG = logging.getLogger("cloudinit_boot")


class Datasource:
    def get_instance_id(self):
        return INSTANCE_ID


class Distro:
    default_owner = "root:root"


class Cloud:
    """What the modules above ask of cloud-init's Cloud object."""

    def __init__(self, paths):
        self.paths = paths
        self.distro = Distro()

    def get_ipath(self, name=None):
        return self.paths.get_ipath(name)

    def get_ipath_cur(self, name=None):
        return self.paths.get_ipath_cur(name)


def consume(paths, blob):
    """The merged cloud-config, as stages.Init does it: process the user data, walk its parts with the
    cloud-config and shell-script handlers."""
    message = user_data.UserDataProcessor(paths).process(blob)
    content_handlers, used = helpers.ContentHandlers(), (CloudConfigPartHandler(paths), ShellScriptPartHandler(paths))
    for handler in used:
        content_handlers.register(handler)
        handlers.call_begin(handler, None, PER_INSTANCE)
    walked = {"handlers": content_handlers, "handlerdir": paths.get_ipath("handlers"), "data": None,
              "frequency": PER_INSTANCE, "handlercount": 0, "excluded": []}
    handlers.walk(message, handlers.walker_callback, walked)
    for handler in used:
        handlers.call_end(handler, None, PER_INSTANCE)
    return util.load_yaml(util.load_file(paths.get_ipath("cloud_config"))) or {}


def main(user_data_file, workdir):
    if not os.path.exists(SANDBOX_MARK):
        sys.exit(f"{SANDBOX_MARK} is missing: not in the scratch /etc/ssh, refusing to touch this one")
    paths = helpers.Paths({"cloud_dir": os.path.join(workdir, "cloud"), "run_dir": os.path.join(workdir, "run")},
                          Datasource())
    instance = paths.get_ipath()
    os.makedirs(os.path.join(instance, "scripts"), exist_ok=True)
    os.symlink(instance, paths.get_ipath_cur())
    with open(user_data_file, "rb") as handle:
        config = consume(paths, handle.read())
    cloud, failed = Cloud(paths), []
    for name, module in (("write_files", cc_write_files), ("runcmd", cc_runcmd),
                         ("write_files_deferred", cc_write_files_deferred), ("scripts_user", cc_scripts_user)):
        try:
            module.handle(name, config, cloud, LOG, [])
        except Exception as exc:  # cloud-init logs a failed module and goes on with the next
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    print(json.dumps({"ssh_pwauth": config.get("ssh_pwauth"), "failed": failed}))


if __name__ == "__main__":
    main(*sys.argv[1:])
