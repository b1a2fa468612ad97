"""Deploy the Glue job with CloudFormation: `python -m deploy` (docs/DEPLOY.md)."""
