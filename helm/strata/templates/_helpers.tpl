{{/*
The chart name, or nameOverride.
*/}}
{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/*
The objects' name prefix: fullnameOverride, else "<release>-<chart name>" (just the release name
when it already contains the chart name). At most 52 characters: a StatefulSet's pods carry a
controller-revision-hash label of its name plus 11 characters, and "<fullname>-headless" must stay
a DNS label (63).
*/}}
{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service giving each pod its DNS name. */}}
{{- define "strata.headless" -}}
{{- printf "%s-headless" (include "strata.fullname" .) -}}
{{- end -}}

{{/* "<namespace>.svc.<clusterDomain>" */}}
{{- define "strata.svcDomain" -}}
{{- printf "%s.svc.%s" .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "strata.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "strata.labels" -}}
helm.sh/chart: {{ include "strata.chart" . }}
{{ include "strata.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels selecting the broker pods (immutable in the StatefulSet: never change them). */}}
{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end -}}

{{- define "strata.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strata.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strata.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Checks the values the schema cannot: fails rendering with a clear message.
*/}}
{{- define "strata.validate" -}}
{{- $voters := int .Values.controller.voters -}}
{{- $replicas := int .Values.replicas -}}
{{- if gt $voters $replicas -}}
{{- fail (printf "controller.voters (%d) must not exceed replicas (%d): pods 0..%d are the controller voters, so they must all exist" $voters $replicas (sub $voters 1)) -}}
{{- end -}}
{{- /* The voters are fixed when the cluster forms: an upgrade must not change them. (lookup
     finds nothing under `helm template` and --dry-run, so this guards real upgrades only.) */ -}}
{{- $installed := lookup "v1" "ConfigMap" .Release.Namespace (include "strata.fullname" .) -}}
{{- if $installed -}}
{{- $was := index ($installed.metadata.annotations | default dict) "strata.io/controller-voters" | default "" -}}
{{- if and $was (ne $was (include "strata.voters" .)) -}}
{{- fail (printf "the controller voters cannot change after install (installed: %s; now: %s): keep controller.voters, clusterDomain, ports.client and the release name as installed" $was (include "strata.voters" .)) -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.ports.client) (int .Values.ports.http) -}}
{{- fail (printf "ports.client and ports.http must differ (both are %d)" (int .Values.ports.client)) -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.config.shutdown.timeoutSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.shutdown.timeoutSeconds (%d), or Kubernetes kills brokers before they drain" (int .Values.terminationGracePeriodSeconds) (int .Values.config.shutdown.timeoutSeconds)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Seconds a pod gets to drain: terminationGracePeriodSeconds, else shutdown timeout + 30. */}}
{{- define "strata.gracePeriod" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (int .Values.config.shutdown.timeoutSeconds) 30 -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* The controller voters: "1@<fullname>-0.<headless>.<ns>.svc.<domain>:<port>,2@...". */}}
{{- define "strata.voters" -}}
{{- $fullname := include "strata.fullname" . -}}
{{- $headless := include "strata.headless" . -}}
{{- $domain := include "strata.svcDomain" . -}}
{{- $voters := list -}}
{{- range $i := until (int .Values.controller.voters) -}}
{{- $voters = append $voters (printf "%d@%s-%d.%s.%s:%d" (add $i 1) $fullname $i $headless $domain (int $.Values.ports.client)) -}}
{{- end -}}
{{- join "," $voters -}}
{{- end -}}

{{/* The address data-only brokers join through: the client Service. */}}
{{- define "strata.joinAddress" -}}
{{- printf "%s.%s:%d" (include "strata.fullname" .) (include "strata.svcDomain" .) (int .Values.ports.client) -}}
{{- end -}}
