# cosdoc-certs-script: gather
<#
.SYNOPSIS
    Gathers the certificate state of a CosDoc application server as one compact JSON document.

.DESCRIPTION
    Read-only. Returns one JSON string (schema version 1, described in
    cosdoc_certs/windows/gather.py) — on every way out: when gathering fails as a whole, the
    document is {"schemaVersion": 1, "error": "<why>"}. Otherwise it has:
      - services whose name matches one of -ServicePatterns (Win32_Service: name, state,
        account, PathName and the install folder derived from it);
      - IIS sites, applications, application pools and HTTPS bindings (WebAdministration),
        plus the certificate bindings of http.sys (IIS:\SslBindings), which is what is served;
      - every certificate in Cert:\LocalMachine\My: DER (base64), private key yes/no, key
        storage (CNG or CAPI), key file path and the accounts allowed to read the key file;
      - the bytes (base64) of each of -ConfigFiles (paths relative to a folder) found in every
        service install folder and every IIS site/application physical path.

    Windows Server 2016-2022 (Windows PowerShell 5.1, .NET Framework >= 4.6). On Server 2012 R2
    with .NET 4.5 RSACertificateExtensions is missing: the key is then read from
    $cert.PrivateKey (CAPI only; CNG keys are reported with keyError).

.EXAMPLE
    & .\gather.ps1 -ServicePatterns 'Digihelse*','KPR*' -ConfigFiles 'appsettings.json'
#>
[CmdletBinding()]
param(
    [string[]] $ServicePatterns = @(),
    [string[]] $ConfigFiles = @('appsettings.json')
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$SchemaVersion = 1
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture
$RsaExtensions = 'System.Security.Cryptography.X509Certificates.RSACertificateExtensions' -as [type]
$EcdsaExtensions = 'System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions' -as [type]
$SoftwareKsp = 'Microsoft Software Key Storage Provider'
$CimTimeoutSeconds = 60

function ConvertTo-IsoUtc {
    # Invariant culture: some cultures (nb-NO on older .NET) use '.' as the time separator.
    param([datetime] $Value)
    return $Value.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", $Invariant)
}

function Get-OptionalProperty {
    # A property that may not exist on this IIS/Windows version, without tripping StrictMode.
    param($InputObject, [string] $Name)
    if ($null -eq $InputObject) { return $null }
    $property = $InputObject.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

function Get-InstallFolder {
    # The folder of the executable in a service PathName: quoted or not, with arguments or not.
    param([string] $PathName)
    if ([string]::IsNullOrWhiteSpace($PathName)) { return $null }
    $text = $PathName.Trim()
    if ($text.StartsWith('"')) {
        $end = $text.IndexOf('"', 1)
        if ($end -lt 0) { $executable = $text.Substring(1) } else { $executable = $text.Substring(1, $end - 1) }
    } else {
        $match = [regex]::Match($text, '^(.+?\.exe)(?:\s|$)', 'IgnoreCase')
        if ($match.Success) { $executable = $match.Groups[1].Value } else { $executable = ($text -split '\s+', 2)[0] }
    }
    return [System.IO.Path]::GetDirectoryName($executable)
}

function Get-ServiceFacts {
    # Win32_Service rather than Get-Service: it has the account (StartName) and PathName.
    param([string[]] $Patterns)
    $services = New-Object System.Collections.Generic.List[object]
    if ($Patterns.Count -eq 0) { return , $services.ToArray() }
    foreach ($service in @(Get-CimInstance -ClassName Win32_Service -OperationTimeoutSec $CimTimeoutSeconds)) {
        $name = [string] $service.Name
        $matched = @($Patterns | Where-Object { $name -like $_ })
        if ($matched.Count -eq 0) { continue }
        $services.Add([ordered]@{
            name          = $name
            displayName   = [string] $service.DisplayName
            state         = [string] $service.State
            startMode     = [string] $service.StartMode
            account       = [string] $service.StartName
            pathName      = [string] $service.PathName
            installFolder = Get-InstallFolder -PathName ([string] $service.PathName)
        })
    }
    return , $services.ToArray()
}

function Get-SslFlags {
    # sslFlags is an integer on IIS 8+, sometimes rendered as flag names; absent on IIS 7.5.
    param($Binding)
    $value = Get-OptionalProperty -InputObject $Binding -Name 'sslFlags'
    if ($null -eq $value -or "$value" -eq '') { return 0 }
    $text = "$value"
    if ($text -match '^\d+$') { return [int] $text }
    $flags = 0
    if ($text -match 'Sni') { $flags = $flags -bor 1 }
    if ($text -match 'CentralCertStore') { $flags = $flags -bor 2 }
    return $flags
}

function Get-IisFacts {
    # Sites, applications (the root application "/" included), pools, HTTPS bindings, http.sys.
    if ($null -eq (Get-Module -ListAvailable -Name WebAdministration)) { return $null }
    Import-Module -Name WebAdministration -Verbose:$false
    $sites = New-Object System.Collections.Generic.List[object]
    $applications = New-Object System.Collections.Generic.List[object]
    $bindings = New-Object System.Collections.Generic.List[object]
    foreach ($site in @(Get-ChildItem -Path 'IIS:\Sites')) {
        $siteName = [string] $site.name
        $sites.Add([ordered]@{
            name         = $siteName
            id           = [int] $site.id
            physicalPath = [Environment]::ExpandEnvironmentVariables([string] $site.physicalPath)
            appPool      = [string] $site.applicationPool
        })
        $applications.Add([ordered]@{
            site         = $siteName
            path         = '/'
            physicalPath = [Environment]::ExpandEnvironmentVariables([string] $site.physicalPath)
            appPool      = [string] $site.applicationPool
        })
        foreach ($application in @(Get-WebApplication -Site $siteName)) {
            $applications.Add([ordered]@{
                site         = $siteName
                path         = [string] $application.path
                physicalPath = [Environment]::ExpandEnvironmentVariables([string] $application.PhysicalPath)
                appPool      = [string] $application.applicationPool
            })
        }
        foreach ($binding in @(Get-WebBinding -Name $siteName -Protocol 'https')) {
            $bindings.Add([ordered]@{
                site                 = $siteName
                bindingInformation   = [string] $binding.bindingInformation
                sslFlags             = Get-SslFlags -Binding $binding
                certificateHash      = [string] (Get-OptionalProperty -InputObject $binding -Name 'certificateHash')
                certificateStoreName = [string] (Get-OptionalProperty -InputObject $binding -Name 'certificateStoreName')
            })
        }
    }
    $pools = New-Object System.Collections.Generic.List[object]
    foreach ($pool in @(Get-ChildItem -Path 'IIS:\AppPools')) {
        $state = Get-OptionalProperty -InputObject $pool -Name 'state'
        if ($null -eq $state) { $state = (Get-WebAppPoolState -Name $pool.name).Value }
        $pools.Add([ordered]@{
            name         = [string] $pool.name
            state        = [string] $state
            identityType = [string] $pool.processModel.identityType
            userName     = [string] $pool.processModel.userName
        })
    }
    # http.sys is what is actually served: IIS configuration may disagree with it.
    $sslBindings = New-Object System.Collections.Generic.List[object]
    foreach ($sslBinding in @(Get-ChildItem -Path 'IIS:\SslBindings')) {
        $sslBindings.Add([ordered]@{
            ip         = [string] (Get-OptionalProperty -InputObject $sslBinding -Name 'IPAddress')
            port       = [int] (Get-OptionalProperty -InputObject $sslBinding -Name 'Port')
            host       = [string] (Get-OptionalProperty -InputObject $sslBinding -Name 'Host')
            thumbprint = [string] (Get-OptionalProperty -InputObject $sslBinding -Name 'Thumbprint')
            store      = [string] (Get-OptionalProperty -InputObject $sslBinding -Name 'Store')
        })
    }
    return [ordered]@{
        sites        = $sites.ToArray()
        applications = $applications.ToArray()
        appPools     = $pools.ToArray()
        bindings     = $bindings.ToArray()
        sslBindings  = $sslBindings.ToArray()
    }
}

function Get-KeyReaders {
    # Accounts with an Allow rule that includes reading the file (ReadData, GENERIC_READ/ALL).
    param([string] $Path)
    $readers = New-Object System.Collections.Generic.List[string]
    foreach ($rule in @((Get-Acl -LiteralPath $Path).Access)) {
        if ([string] $rule.AccessControlType -ne 'Allow') { continue }
        $rights = [int] $rule.FileSystemRights
        $canRead = (($rights -band 1) -ne 0) -or (($rights -band 0x10000000) -ne 0) -or ($rights -lt 0)
        $account = [string] $rule.IdentityReference.Value
        if ($canRead -and -not $readers.Contains($account)) { $readers.Add($account) }
    }
    return , $readers.ToArray()
}

function Get-PrivateKeyObject {
    # .NET >= 4.6: RSACng for CNG keys, RSACryptoServiceProvider for CAPI keys; else CAPI only.
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    if ($null -eq $RsaExtensions) { return $Certificate.PrivateKey }
    $key = $RsaExtensions::GetRSAPrivateKey($Certificate)
    if ($null -eq $key -and $null -ne $EcdsaExtensions) { $key = $EcdsaExtensions::GetECDsaPrivateKey($Certificate) }
    return $key
}

function Get-CapiProviderName {
    # The CSP of a CAPI key (.PrivateKey answers for CAPI keys only; it throws for CNG keys).
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    try {
        $capiKey = $Certificate.PrivateKey
        if ($capiKey -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) { return [string] $capiKey.CspKeyContainerInfo.ProviderName }
    } catch {
        Write-Verbose ('{0}: not a CAPI key ({1})' -f $Certificate.Thumbprint, $_.Exception.Message)
    }
    return $null
}

function Get-KeyFacts {
    # Where the private key lives: CNG under Crypto\Keys, CAPI under Crypto\RSA\MachineKeys.
    param([System.Security.Cryptography.X509Certificates.X509Certificate2] $Certificate)
    $facts = [ordered]@{ keyStorage = $null; keyProvider = $null; keyFile = $null; readers = @(); keyError = $null }
    if (-not $Certificate.HasPrivateKey) { return $facts }
    $key = $null
    try {
        $key = Get-PrivateKeyObject -Certificate $Certificate
        $cngKey = Get-OptionalProperty -InputObject $key -Name 'Key'
        if ($cngKey -is [System.Security.Cryptography.CngKey]) {
            $facts.keyStorage = 'CNG'
            $facts.keyProvider = [string] $cngKey.Provider.Provider
            if ($facts.keyProvider -eq $SoftwareKsp) {
                $facts.keyFile = Join-Path -Path $env:ProgramData -ChildPath ('Microsoft\Crypto\Keys\' + $cngKey.UniqueName) -ErrorAction Stop
            }
        } elseif ($key -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) {
            $facts.keyStorage = 'CAPI'
            $facts.keyProvider = [string] $key.CspKeyContainerInfo.ProviderName
            $container = [string] $key.CspKeyContainerInfo.UniqueKeyContainerName
            $facts.keyFile = Join-Path -Path $env:ProgramData -ChildPath ('Microsoft\Crypto\RSA\MachineKeys\' + $container) -ErrorAction Stop
        } else {
            $facts.keyError = 'the private key is neither a CNG nor a CAPI key this script can locate'
        }
        # .NET 4.7+ may open a CAPI key through CNG: the CSP name comes from .PrivateKey then.
        $capiProvider = Get-CapiProviderName -Certificate $Certificate
        if ($null -ne $capiProvider) { $facts.keyProvider = $capiProvider }
        if ($null -ne $facts.keyFile) {
            if (Test-Path -LiteralPath $facts.keyFile -PathType Leaf -ErrorAction Stop) {
                $facts.readers = Get-KeyReaders -Path $facts.keyFile
            } else {
                $facts.keyError = 'key file not found: ' + $facts.keyFile
                $facts.keyFile = $null
            }
        }
    } catch {
        $facts.keyError = $_.Exception.Message
    } finally {
        if ($key -is [System.IDisposable]) { $key.Dispose() }
    }
    return $facts
}

function Get-CertificateFacts {
    # Flat projections: serialising certificate objects drags PrivateKey along (throws for CNG).
    $certificates = New-Object System.Collections.Generic.List[object]
    foreach ($certificate in @(Get-ChildItem -Path 'Cert:\LocalMachine\My')) {
        $key = Get-KeyFacts -Certificate $certificate
        $certificates.Add([ordered]@{
            thumbprint    = [string] $certificate.Thumbprint
            der           = [Convert]::ToBase64String($certificate.RawData)
            hasPrivateKey = [bool] $certificate.HasPrivateKey
            notAfter      = ConvertTo-IsoUtc -Value $certificate.NotAfter
            keyStorage    = $key.keyStorage
            keyProvider   = $key.keyProvider
            keyFile       = $key.keyFile
            readers       = $key.readers
            keyError      = $key.keyError
        })
    }
    return , $certificates.ToArray()
}

function Get-ConfigFileFacts {
    # Each relative config path under each folder, once; missing files are reported too.
    param([string[]] $Folders, [string[]] $RelativePaths)
    $files = New-Object System.Collections.Generic.List[object]
    $seen = New-Object 'System.Collections.Generic.HashSet[string]' ([StringComparer]::OrdinalIgnoreCase)
    foreach ($folder in $Folders) {
        if ([string]::IsNullOrWhiteSpace($folder)) { continue }
        foreach ($relativePath in $RelativePaths) {
            $path = Join-Path -Path $folder -ChildPath $relativePath
            if (-not $seen.Add($path)) { continue }
            $content = $null
            if (Test-Path -LiteralPath $path -PathType Leaf) {
                $content = [Convert]::ToBase64String([System.IO.File]::ReadAllBytes($path))
            }
            $files.Add([ordered]@{ path = $path; exists = ($null -ne $content); content = $content })
        }
    }
    return , $files.ToArray()
}

# Every way out writes one document: a failure outside the per-item reads is its "error".
try {
    $services = Get-ServiceFacts -Patterns $ServicePatterns
    $iis = Get-IisFacts
    $folders = New-Object System.Collections.Generic.List[string] -ErrorAction Stop
    foreach ($service in $services) { $folders.Add([string] $service.installFolder) }
    if ($null -ne $iis) {
        foreach ($application in $iis.applications) { $folders.Add([string] $application.physicalPath) }
    }

    $facts = [ordered]@{
        schemaVersion = $SchemaVersion
        computerName  = [string] $env:COMPUTERNAME
        gatheredAt    = ConvertTo-IsoUtc -Value ([datetime]::UtcNow)
        psVersion     = [string] $PSVersionTable.PSVersion
        services      = $services
        iis           = $iis
        certificates  = Get-CertificateFacts
        configFiles   = Get-ConfigFileFacts -Folders $folders.ToArray() -RelativePaths $ConfigFiles
    }
} catch {
    $facts = [ordered]@{ schemaVersion = $SchemaVersion; error = [string] $_.Exception.Message }
}
ConvertTo-Json -InputObject $facts -Depth 10 -Compress
