{
  "format": "shopfloor-skill-signature/1",
  "key": "ed25519:jDfiOdrAZaCrOLu/KvoPl/7OE1KljX6z59aFLrm1zVA=",
  "manifest": {
    "files": [
      {
        "path": "SKILL.md",
        "sha256": "cc8a7dec5767f15a78252e5750ac5ee7a0b41b7fde71af0939b7b07b856c8114",
        "size": 1151
      },
      {
        "path": "requirements.txt",
        "sha256": "af5c804a81a0070c8e98b30557548d8bc78fe08ec665fb883d790ceca2f9c2ae",
        "size": 61
      },
      {
        "path": "scripts/run_code.py",
        "sha256": "05682f4b6c1cdc65d8dd5d274be371997e2612c4ba967c2a1ff337b84962198d",
        "size": 2164
      },
      {
        "path": "shopfloor.yaml",
        "sha256": "fdbe6fc3b5ab8adbb9eb6112331f765eacdcde87a6f9e4c32eebf2596dd35035",
        "size": 564
      }
    ],
    "format": "shopfloor-skill-manifest/1",
    "front_matter": {
      "compatibility": "Runs in the Shopfloor sandbox with no network; pandas, numpy, matplotlib and pyarrow are installed from requirements.txt.",
      "description": "Run a short Python program against the workspace files (pandas, numpy and matplotlib available) and get back what it printed, the value of its last expression and the files it wrote.",
      "license": "Apache-2.0",
      "metadata": {
        "author": "shopfloor",
        "version": "1.0.0"
      },
      "name": "python"
    }
  },
  "signature": "HZ1YIFJJ9upRiCojFDTXAhRKKDJF1OkIIIk/AidAJYBXK8Nmm33wadDmebODy6uqwzF7Teb7FEyP/qzDdtNsAA=="
}
