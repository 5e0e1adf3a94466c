{{/*
strata.toml: every pod gets the same file. Only keys of broker/src/config.rs EXAMPLE_CONFIG (the
broker rejects unknown keys). Listen and advertised addresses depend on the pod, so they come from
the environment (STRATA_LISTEN, STRATA_HTTP, STRATA_ADVERTISED_ADDRESS) in the StatefulSet.
*/}}
{{- define "strata.config" -}}
{{- $c := .Values.config -}}
# Rendered by the Helm chart {{ include "strata.chart" . }} from its values; edit the values, not this.
# The node id is the pod's ordinal + 1 (pod {{ include "strata.fullname" . }}-0 is node 1).
node_id_from_hostname = true
data_dir = "/data"

[cluster]
# Pods 0..{{ sub (int .Values.controller.voters) 1 }} are the controller voters. Any other pod is a data-only broker and
# registers through join (the client Service); the voters ignore join.
voters = {{ include "strata.voters" . | quote }}
join = {{ include "strata.joinAddress" . | quote }}

[metrics]
per_partition = {{ $c.metrics.perPartition }}

[raft]
tick = {{ $c.raft.tick | quote }}

[shutdown]
timeout = "{{ int $c.shutdown.timeoutSeconds }}s"

[topic_defaults]
partitions = {{ int $c.topicDefaults.partitions }}
flush = {{ $c.topicDefaults.flush | quote }}
retention = {{ include "strata.scalar" (get $c.topicDefaults "retention") | quote }}
retention_bytes = {{ include "strata.scalar" (get $c.topicDefaults "retentionBytes") | quote }}
segment_bytes = {{ include "strata.scalar" (get $c.topicDefaults "segmentBytes") | quote }}
max_message_bytes = {{ include "strata.scalar" (get $c.topicDefaults "maxMessageBytes") | quote }}
{{- end -}}


{{/* A size or duration value as text: numbers (floats once YAML is parsed) as integers. */}}
{{- define "strata.scalar" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
