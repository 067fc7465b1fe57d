{
  "format": "shopfloor-skill-signature/1",
  "key": "ed25519:jDfiOdrAZaCrOLu/KvoPl/7OE1KljX6z59aFLrm1zVA=",
  "manifest": {
    "files": [
      {
        "path": "SKILL.md",
        "sha256": "a7dcc51717a495cddf53ddbe639818c58c265a6b6776aab495b63e2fd742c12e",
        "size": 2534
      },
      {
        "path": "requirements.txt",
        "sha256": "af5c804a81a0070c8e98b30557548d8bc78fe08ec665fb883d790ceca2f9c2ae",
        "size": 61
      },
      {
        "path": "schemas/input.json",
        "sha256": "89f7ee5e16442575394637ef6baa91f4393a7fa8f7a2e89832557b90b6b58a8a",
        "size": 4633
      },
      {
        "path": "schemas/output.json",
        "sha256": "4e5af3937c08a1ecae59b4b29a466bae0cda5cd5db628f476b74d00a6ccd5d85",
        "size": 502
      },
      {
        "path": "scripts/analyze.py",
        "sha256": "db16daac13abd34a1a6bf0c67a3ba74f5657e75003f7c191f2d856cdec09ae60",
        "size": 26931
      },
      {
        "path": "shopfloor.yaml",
        "sha256": "2587e30e3f9f50df7a6d3c53d4f802b0f5fc6757ac075dbd26d3191505cb0244",
        "size": 282
      }
    ],
    "format": "shopfloor-skill-manifest/1",
    "front_matter": {
      "compatibility": "Runs in the Shopfloor sandbox; needs pandas, matplotlib and pyarrow (installed from requirements.txt).",
      "description": "Analyse a CSV, JSON or Parquet file of the workspace with one narrow operation (describe, column statistic, row count, best group, per-group table, filter, correlation, linear regression, PNG chart) and get structured JSON back.",
      "license": "Apache-2.0",
      "metadata": {
        "author": "shopfloor",
        "version": "1.0.0"
      },
      "name": "data-analysis"
    }
  },
  "signature": "E4MHCh3iLT9//XzY0ILoXqTipk02pjf5mlLOFLa4d2t/LTnD+gQ+yJD/kj1W8qdQcTJhXEXjVJOcYBNZxKNsCQ=="
}
