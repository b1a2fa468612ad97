"""Run moto's server with the CloudFormation models and fixes of local/moto_cfn.py loaded.

moto 5.2.5's CloudFormation skips AWS::Glue::Job/Workflow/Trigger and AWS::CloudWatch::Alarm
while reporting success; local/moto_cfn.py adds models for them (calling moto's own Glue and
CloudWatch backends), makes other unsupported types fail loudly, and keeps a change-set-deployed
stack's outputs. The models are registered by importing the module, before moto builds its model
map (on the first stack operation). Otherwise it runs moto's own CLI unchanged.

Usage (from local/stack.py): python local/moto_server.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script: find `local`

    from moto.server import main

    from local import moto_cfn

    moto_cfn.patch_cloudformation()
    sys.exit(main(sys.argv[1:]))
