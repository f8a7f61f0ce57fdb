"""The console scripts' entry points defer boto3 without changing what it does."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from custody import launch
launch.defer_import("boto3")
import securesystemslib.signer  # imports boto3 for its AWS KMS signer
assert "boto3.session" not in sys.modules, "boto3 was loaded at import"
import boto3
client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                      aws_access_key_id="a", aws_secret_access_key="b")
assert "boto3.session" in sys.modules and type(sys.modules["boto3"]).__name__ == "module"
from securesystemslib.signer import _aws_signer
assert _aws_signer.boto3.client is boto3.client  # the reference taken early works too
print(type(client).__name__)
"""


def test_boto3_loads_on_first_use_and_works():
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "S3"


def test_a_poll_never_imports_boto3():
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from custody import launch; launch.defer_import('boto3');"
                        " import custody.client.cli, custody.client.packages,"
                        " custody.client.updater;"
                        " print('botocore.session' in sys.modules)"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
