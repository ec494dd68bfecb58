#!/usr/bin/env python3
# expect: refuse graylift does not run inventory scripts
import json

print(json.dumps({"web": {"hosts": ["web-1"]}, "_meta": {"hostvars": {"web-1": {"ansible_host": "10.213.0.1"}}}}))
