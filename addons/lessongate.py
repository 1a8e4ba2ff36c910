"""LessonGate for mitmproxy: SNI/Host policy without decryption.

Transparent (behind nftables REDIRECT on the gateway)::

    mitmdump --mode transparent@8080 --set connection_strategy=lazy \
        -s addons/lessongate.py --set lessongate_config=schedules/example-school

Explicit proxy for managed devices (they fetch http://<gateway>/proxy.pac)::

    mitmdump --mode regular@3128 --set connection_strategy=lazy -s addons/lessongate.py \
        --set lessongate_config=schedules/example-school --set lessongate_role=explicit

Options: lessongate_config (required), lessongate_state (exemption store directory),
lessongate_clock (a file holding the time, tests and demo), lessongate_role.
``connection_strategy=lazy`` is required: it is what keeps blocked names from ever getting an
upstream connection.
"""

from appliance.proxy.addon import LessonGate

addons = [LessonGate()]
