"""Call-state sources: long-lived listeners that report PBX calls as call_started/call_ended."""
