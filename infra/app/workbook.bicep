// An Azure Monitor workbook over the app's metrics in Application Insights (docs/metrics.md): the fleet's expiry
// timeline, renewal outcomes over time, failures by reason, and a table per vault. Every query reads customMetrics,
// where the exporter writes each point with its attributes as customDimensions.
param location string
param tags object
param namePrefix string
param applicationInsightsId string
@description('The workbook\'s name in the portal.')
param displayName string = 'Certificate renewal fleet'

// The gauges are sent once per sweep: the last row per certificate is its current state.
var latestCertificates = '''
customMetrics
| where name in ("renewal_certificate_expiration_timestamp_seconds", "renewal_certificate_renewal_timestamp_seconds", "renewal_certificate_ready_status")
| extend vault = tostring(customDimensions.vault), certificate = tostring(customDimensions.certificate), ca_profile = tostring(customDimensions.ca_profile), condition = tostring(customDimensions.condition)
| summarize arg_max(timestamp, value) by name, vault, certificate, ca_profile, condition
| summarize expires = maxif(value, name == "renewal_certificate_expiration_timestamp_seconds"), renews = maxif(value, name == "renewal_certificate_renewal_timestamp_seconds"), at_risk = maxif(value, name == "renewal_certificate_ready_status" and condition == "False") by vault, certificate, ca_profile
| extend expires_on = unixtime_seconds_todatetime(expires), renews_from = iif(isnull(renews), datetime(null), unixtime_seconds_todatetime(renews))
| extend days_left = round((expires_on - now()) / 1d, 1), at_risk = at_risk == 1
'''

var expiryTimeline = '${latestCertificates}| summarize certificates = count() by bin(expires_on, 7d), vault\n| order by expires_on asc\n'

var expiryTable = '${latestCertificates}| project certificate, vault, ca_profile, expires_on, days_left, renews_from, at_risk\n| order by expires_on asc\n'

var outcomesOverTime = '''
customMetrics
| where name == "renewal_renewals_total"
| extend status = tostring(customDimensions.status)
| summarize renewals = sum(valueSum) by status, bin(timestamp, {TimeRange:grain})
'''

var failuresByReason = '''
customMetrics
| where name == "renewal_renewals_total" and tostring(customDimensions.status) == "failed"
| extend reason = tostring(customDimensions.reason), vault = tostring(customDimensions.vault)
| summarize failures = sum(valueSum), certificates = dcount(tostring(customDimensions.certificate)) by reason, vault
| order by failures desc
'''

var perVault = '''
let renewals = customMetrics
| where name == "renewal_renewals_total"
| extend vault = tostring(customDimensions.vault), status = tostring(customDimensions.status)
| summarize renewed = sumif(valueSum, status == "renewed"), failed = sumif(valueSum, status == "failed"), pending = sumif(valueSum, status == "pending") by vault;
customMetrics
| where name in ("renewal_certificate_expiration_timestamp_seconds", "renewal_certificate_ready_status")
| extend vault = tostring(customDimensions.vault), certificate = tostring(customDimensions.certificate), condition = tostring(customDimensions.condition)
| summarize arg_max(timestamp, value) by name, vault, certificate, condition
| summarize certificates = dcount(certificate), at_risk = countif(name == "renewal_certificate_ready_status" and condition == "False" and value == 1), next_expiry = unixtime_seconds_todatetime(minif(value, name == "renewal_certificate_expiration_timestamp_seconds")) by vault
| join kind=leftouter renewals on vault
| project vault, certificates, at_risk, next_expiry, renewed = coalesce(renewed, 0.0), failed = coalesce(failed, 0.0), pending = coalesce(pending, 0.0)
| order by at_risk desc, next_expiry asc
'''

var caRequests = '''
customMetrics
| where name == "renewal_ca_requests_total"
| extend ca_profile = tostring(customDimensions.ca_profile), adapter = tostring(customDimensions.adapter), result = tostring(customDimensions.result)
| summarize requests = sum(valueSum) by ca_profile, adapter, result
| order by ca_profile asc, requests desc
'''

var deliveries = '''
customMetrics
| where name in ("renewal_deliveries_total", "renewal_dead_letters_total")
| extend endpoint = tostring(customDimensions.endpoint), kind = tostring(customDimensions.kind), result = iif(name == "renewal_dead_letters_total", "dead_lettered", tostring(customDimensions.result))
| summarize attempts = sum(valueSum) by endpoint, kind, result
| order by endpoint asc, result asc
'''

var durations = '''
customMetrics
| where name == "renewal_renewal_duration_seconds"
| extend ca_profile = tostring(customDimensions.ca_profile)
| summarize mean_seconds = sum(valueSum) / sum(valueCount), longest_seconds = max(valueMax) by ca_profile, bin(timestamp, {TimeRange:grain})
'''

// One query item of the workbook (KqlItem/1.0), over the App Insights component, scoped by the time range picker.
var queryDefaults = {
  version: 'KqlItem/1.0'
  queryType: 0
  resourceType: 'microsoft.insights/components'
  timeContextFromParameter: 'TimeRange'
  crossComponentResources: [
    applicationInsightsId
  ]
}

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## Certificate renewal fleet\nFrom the app\'s own metrics (cert-manager\'s names, `renewal_` prefix): the certificates by expiry, what the renewals did and why they failed. The gauges are refreshed by each sweep.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        parameters: [
          {
            id: 'time-range'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: {
              durationMs: 604800000
            }
            typeSettings: {
              selectableValues: [
                {
                  durationMs: 86400000
                }
                {
                  durationMs: 604800000
                }
                {
                  durationMs: 2592000000
                }
                {
                  durationMs: 7776000000
                }
              ]
            }
          }
        ]
      }
    }
    {
      type: 3
      name: 'expiry-timeline'
      content: union(queryDefaults, {
        title: 'Expiry timeline: certificates expiring per week, by vault'
        query: expiryTimeline
        visualization: 'barchart'
        size: 0
      })
    }
    {
      type: 3
      name: 'certificates-by-expiry'
      content: union(queryDefaults, {
        title: 'Certificates by expiry'
        query: expiryTable
        visualization: 'table'
        size: 0
        gridSettings: {
          formatters: [
            {
              columnMatch: 'days_left'
              formatter: 8
              formatOptions: {
                palette: 'redGreen'
              }
            }
          ]
        }
      })
    }
    {
      type: 3
      name: 'outcomes-over-time'
      content: union(queryDefaults, {
        title: 'Renewal outcomes over time'
        query: outcomesOverTime
        visualization: 'timechart'
        size: 0
      })
    }
    {
      type: 3
      name: 'failures-by-reason'
      content: union(queryDefaults, {
        title: 'Failures by reason'
        query: failuresByReason
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'per-vault'
      content: union(queryDefaults, {
        title: 'Per vault'
        query: perVault
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'ca-requests'
      content: union(queryDefaults, {
        title: 'CA requests by profile and result'
        query: caRequests
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'deliveries'
      content: union(queryDefaults, {
        title: 'Deliveries and dead letters by endpoint'
        query: deliveries
        visualization: 'table'
        size: 0
      })
    }
    {
      type: 3
      name: 'durations'
      content: union(queryDefaults, {
        title: 'Renewal duration (seconds) by CA profile'
        query: durations
        visualization: 'timechart'
        size: 0
      })
    }
  ]
  fallbackResourceIds: [
    applicationInsightsId
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

// A workbook's name must be a GUID; this one is stable per environment, so redeploying updates it in place.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsightsId, namePrefix, 'renewal-fleet-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string(workbookContent)
  }
}

output workbookId string = workbook.id
