{{/*
Names and labels shared by every template.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "course-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else the release name when it already contains the chart name
(release "course-operator" gives objects named "course-operator"), else <release>-<chart>.
Truncated to 63 characters (DNS label limit).
*/}}
{{- define "course-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "course-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "course-operator.labels" -}}
helm.sh/chart: {{ include "course-operator.chart" . }}
{{ include "course-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "course-operator.imageTag" . | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: course-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels selecting the operator pods: stable for the release's life (immutable selectors). */}}
{{- define "course-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "course-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount the operator runs as. */}}
{{- define "course-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "course-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image tag: image.tag, else the chart's appVersion. */}}
{{- define "course-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Name of the leader-election Role and RoleBinding. */}}
{{- define "course-operator.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "course-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Affinity: .Values.affinity as given, plus the pod anti-affinity preset when the given affinity
has none.
*/}}
{{- define "course-operator.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- if not (hasKey $affinity "podAntiAffinity") }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "course-operator.selectorLabels" . | fromYaml)) }}
{{- if eq .Values.podAntiAffinityPreset "soft" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- else if eq .Values.podAntiAffinityPreset "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- end }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}

{{/* Topology spread constraints: the zone spread (when enabled) plus any given ones. */}}
{{- define "course-operator.topologySpreadConstraints" -}}
{{- $constraints := list }}
{{- if .Values.topologySpread.enabled }}
{{- $constraints = append $constraints (dict "maxSkew" (.Values.topologySpread.maxSkew | default 1) "topologyKey" (.Values.topologySpread.topologyKey | default "topology.kubernetes.io/zone") "whenUnsatisfiable" (.Values.topologySpread.whenUnsatisfiable | default "ScheduleAnyway") "labelSelector" (dict "matchLabels" (include "course-operator.selectorLabels" . | fromYaml))) }}
{{- end }}
{{- $constraints = concat $constraints .Values.topologySpreadConstraints }}
{{- if $constraints }}
{{- toYaml $constraints }}
{{- end }}
{{- end }}
